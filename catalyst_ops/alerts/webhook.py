"""A second, optional channel: one JSON POST per message (ntfy, Slack-compatible relays, ...).

The body carries `title`, `text`, `message` (title + text, for endpoints that show one field),
`severity` and the outbox rows. Any 2xx is acceptance; anything else is a failure to retry.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit


class WebhookError(Exception):
    pass


def _where(url: str) -> str:
    # the URL may carry a token (Slack-style hooks): show only scheme://host[:port]
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def post(url: str, payload: dict, timeout: float) -> None:
    data = json.dumps(payload, sort_keys=True).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "catalyst-ops"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise WebhookError(f"webhook {_where(url)} answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"webhook {_where(url)} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookError(f"webhook {_where(url)} unreachable: {getattr(reason, 'strerror', None) or reason}")
