"""Email transport: smtplib with STARTTLS (certificate verified by default), login, timeouts.

Settings come from the stack's `.env`. Both spellings are accepted: the real stack's
`SMTP_TLS` + `ALERT_EMAIL_CRITICAL`/`_WARNING`/`_INFO`, and the plan's `SMTP_USE_TLS` +
one `ALERT_EMAIL`. Upstream's compose and alerts code spell the host `SMTP_SERVER` and the login
`SMTP_USER`: those aliases are accepted with a warning (the canonical key wins when both are set),
as is `ALERT_EMAIL` standing in for a severity without its own key. Each warning names the key and
the file and is logged once per process, so a cron log gets one line per run, not one per send.
Every step of a send is classified (DNS, connect, TLS, authentication, sender refused, recipient
refused, message refused) so `alert test` can say exactly what failed; the password is registered
as a secret and never appears in a message.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import logging

from catalyst_ops import log
from catalyst_ops.errors import USAGE, ConfigError, OpsError

_log = logging.getLogger(__name__)
# (key, file) already warned about in this process
_warned: set[tuple[str, str]] = set()

SEVERITIES = ("critical", "warning", "info")
_TRUE = {"1", "true", "yes", "on", "starttls"}
_FALSE = {"0", "false", "no", "off", "none", "plain"}
_SSL = {"ssl", "tls", "smtps", "implicit"}


class SendError(Exception):
    """A send that failed at one named step. `kind` is what `alert test` prints."""

    def __init__(self, kind: str, message: str, permanent: bool = False):
        super().__init__(log.redact(f"{kind}: {message}"))
        self.kind = kind
        self.permanent = permanent


@dataclass
class SmtpSettings:
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    tls: str = "starttls"  # starttls | ssl | none
    recipients: dict[str, list[str]] = field(default_factory=dict)  # severity -> addresses

    def route(self, severity: str) -> list[str]:
        return self.recipients.get(severity, [])


def _split(value: str) -> list[str]:
    return [a.strip() for a in value.replace(";", ",").split(",") if a.strip()]


def _tls_mode(env: dict, source: str, port: int) -> str:
    values = {k: env[k].strip().lower() for k in ("SMTP_TLS", "SMTP_USE_TLS") if env.get(k, "").strip()}
    modes = {}
    for key, v in values.items():
        if v in _TRUE:
            modes[key] = "ssl" if port == 465 and v != "starttls" else "starttls"
        elif v in _FALSE:
            modes[key] = "none"
        elif v in _SSL:
            modes[key] = "ssl"
        else:
            raise ConfigError(source, key, f"expected true, false, starttls or ssl, got {env[key]!r}")
    if len(set(modes.values())) > 1:
        raise ConfigError(source, "SMTP_TLS", f"SMTP_TLS and SMTP_USE_TLS disagree ({values['SMTP_TLS']!r} vs "
                          f"{values['SMTP_USE_TLS']!r}); set one, or both the same")
    if modes:
        return next(iter(modes.values()))
    return "ssl" if port == 465 else "starttls"


def _warn_once(key: str, source: str, message: str) -> None:
    if (key, source) in _warned:
        return
    _warned.add((key, source))
    _log.warning("%s: %s", source, message)


def _key(env: dict, source: str, canonical: str, alias: str) -> str:
    """The canonical key's value, else the alias's (with a warning); the canonical key wins."""
    value = env.get(canonical, "").strip()
    other = env.get(alias, "").strip()
    if value:
        if other and other != value:
            _warn_once(alias, source, f"{alias} is ignored: {canonical} is set and wins")
        return value
    if other:
        _warn_once(alias, source, f"{alias} read as {canonical} (upstream's spelling); write {canonical} "
                   "to silence this warning")
    return other


def settings_from_env(env: dict, source: str) -> SmtpSettings | None:
    """SMTP settings from the .env, or None when SMTP_HOST (or SMTP_SERVER) is not set (email not configured)."""
    host = _key(env, source, "SMTP_HOST", "SMTP_SERVER")
    if not host:
        return None
    port_text = env.get("SMTP_PORT", "").strip() or "587"
    try:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(source, "SMTP_PORT", f"expected a port number 1-65535, got {port_text!r}")
    password = env.get("SMTP_PASSWORD", "")
    log.add_secret(password)
    username = _key(env, source, "SMTP_USERNAME", "SMTP_USER")
    sender = env.get("SMTP_FROM", "").strip() or username
    if not sender:
        raise ConfigError(source, "SMTP_FROM", "expected the sender address (or SMTP_USERNAME)")
    single = _split(env.get("ALERT_EMAIL", ""))
    per = {sev: _split(env.get(f"ALERT_EMAIL_{sev.upper()}", "")) for sev in SEVERITIES}
    recipients: dict[str, list[str]] = {}
    via_single = []
    for sev in SEVERITIES:
        # own key, else the single ALERT_EMAIL, else the nearest more severe route: never drop an alert
        # because one severity has no address of its own
        route = per[sev] or single
        if not per[sev] and single:
            via_single.append(sev)
        if not route:
            for other in SEVERITIES:
                if per[other]:
                    route = per[other]
                    break
        recipients[sev] = route
    if via_single:
        _warn_once("ALERT_EMAIL", source, f"ALERT_EMAIL is the recipient of {', '.join(via_single)} alerts "
                   f"(no {', '.join('ALERT_EMAIL_' + s.upper() for s in via_single)}); set the per-severity "
                   "keys to silence this warning")
    if not any(recipients.values()):
        raise ConfigError(source, "ALERT_EMAIL", "expected ALERT_EMAIL or ALERT_EMAIL_CRITICAL/_WARNING/_INFO "
                          "(SMTP_HOST is set, but nobody to send to)")
    return SmtpSettings(host, port, username, password, sender, _tls_mode(env, source, port), recipients)


def build_message(settings: SmtpSettings, to: list[str], subject: str, text: str, html: str | None = None,
                  ids: list[int] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    domain = settings.sender.rpartition("@")[2] or socket.gethostname()
    msg["Message-ID"] = make_msgid("catalyst-ops", domain=domain)
    if ids:
        # lets an operator (or a mail filter) see which outbox rows a message carries
        msg["X-Catalyst-Alert-Ids"] = ",".join(str(i) for i in ids)
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


def tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise OpsError(f"alerts.ca_file: cannot load CA file {ca_file!r}: {exc.__class__.__name__}", USAGE)


def send(settings: SmtpSettings, msg: EmailMessage, timeout: float = 10.0, verify: bool = True,
         ca_file: str | None = None) -> dict:
    """Send one message. Returns the refused recipients (empty if all accepted); raises SendError."""
    host, port = settings.host, settings.port
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SendError("DNS", f"cannot resolve SMTP host {host!r}: {exc.strerror or exc}")
    ctx = tls_context(verify, ca_file) if settings.tls != "none" else None
    smtp: smtplib.SMTP | None = None
    try:
        try:
            # the host goes to the constructor: STARTTLS checks the certificate against it
            if settings.tls == "ssl":
                smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ctx)
            else:
                smtp = smtplib.SMTP(host, port, timeout=timeout)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise SendError("TLS", f"TLS handshake with {host}:{port} failed: {_ssl_reason(exc)}")
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError("connect", f"cannot connect to {host}:{port}: {_os_reason(exc)}")
        try:
            smtp.ehlo()
            if settings.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SendError("TLS", f"{host}:{port} does not offer STARTTLS (set SMTP_TLS=false only for a "
                                    "relay on localhost)")
                try:
                    smtp.starttls(context=ctx)
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    raise SendError("TLS", f"STARTTLS with {host}:{port} failed: {_ssl_reason(exc)}")
                smtp.ehlo()
            if settings.username:
                try:
                    smtp.login(settings.username, settings.password)
                except smtplib.SMTPAuthenticationError as exc:
                    raise SendError("authentication", f"{host}:{port} refused the login of {settings.username!r}: "
                                    f"{_smtp_reason(exc)}", permanent=True)
                except smtplib.SMTPNotSupportedError:
                    raise SendError("authentication", f"{host}:{port} offers no AUTH (after TLS); check SMTP_TLS "
                                    "and the port", permanent=True)
            try:
                refused = smtp.send_message(msg)
            except smtplib.SMTPSenderRefused as exc:
                raise SendError("sender refused", f"{host}:{port} refused sender {settings.sender!r}: "
                                f"{_smtp_reason(exc)}", permanent=True)
            except smtplib.SMTPRecipientsRefused as exc:
                shown = "; ".join(f"{rcpt}: {_smtp_reason(err)}" for rcpt, err in exc.recipients.items())
                # 5xx is a refusal; 4xx (mailbox busy, greylisting) is worth another try
                permanent = all(isinstance(err, tuple) and isinstance(err[0], int) and err[0] >= 500
                                for err in exc.recipients.values())
                raise SendError("recipient refused", f"{host}:{port} refused every recipient ({shown})",
                                permanent=permanent)
            except smtplib.SMTPDataError as exc:
                raise SendError("message refused", f"{host}:{port} refused the message: {_smtp_reason(exc)}",
                                permanent=(exc.smtp_code or 0) >= 500)
            return {k: _smtp_reason(v) for k, v in (refused or {}).items()}
        except SendError:
            raise
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise SendError("TLS", f"TLS error with {host}:{port}: {_ssl_reason(exc)}")
        except (socket.timeout, TimeoutError):
            raise SendError("connect", f"{host}:{port} stopped answering (timeout {timeout:g}s)")
        except smtplib.SMTPServerDisconnected as exc:
            raise SendError("connect", f"{host}:{port} closed the connection: {exc}")
        except smtplib.SMTPException as exc:
            raise SendError("SMTP", f"{host}:{port}: {_smtp_reason(exc)}")
        except OSError as exc:
            raise SendError("connect", f"{host}:{port}: {_os_reason(exc)}")
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except Exception:
                try:
                    smtp.close()
                except Exception:
                    pass


def _smtp_reason(exc) -> str:
    if isinstance(exc, tuple) and len(exc) == 2:
        code, text = exc
    else:
        code, text = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", None)
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if code is None:
        return log.redact(str(exc))
    return log.redact(f"{code} {text}".strip())


def _ssl_reason(exc) -> str:
    return getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc.__class__.__name__


def _os_reason(exc) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return exc.strerror or str(exc) or exc.__class__.__name__
