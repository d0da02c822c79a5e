"""A small JSON-over-HTTP client (requests), with errors turned into one-line OpsErrors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalyst_ops.errors import CannotRun


class NoAnswer(CannotRun):
    """The request was sent and the server did not answer in time: it may have acted on it."""


@dataclass
class Response:
    status: int
    body: Any  # parsed JSON, or the text when not JSON
    text: str
    headers: dict = field(default_factory=dict)


def request(method: str, url: str, *, json_body: Any = None, params: dict | None = None, headers: dict | None = None,
            timeout: float = 10.0, what: str = "") -> Response:
    """Send one request. Connection problems raise CannotRun naming `what` and the URL (no secrets:
    headers are never part of the message)."""
    import requests

    label = what or url
    try:
        resp = requests.request(method, url, json=json_body, params=params, headers=headers, timeout=timeout)
    except requests.exceptions.ConnectTimeout:
        raise CannotRun(f"{label}: connect timed out after {timeout:g}s ({url})")
    except requests.exceptions.ReadTimeout:
        raise NoAnswer(f"{label}: no answer within {timeout:g}s ({url})")
    except requests.exceptions.ConnectionError as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
        raise CannotRun(f"{label}: {reason} ({url})")
    except requests.exceptions.RequestException as exc:
        raise CannotRun(f"{label}: {exc.__class__.__name__} ({url})")
    text = resp.text
    try:
        body = resp.json()
    except ValueError:
        body = text
    return Response(resp.status_code, body, text, dict(resp.headers))
