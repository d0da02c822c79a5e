"""A real SMTP server for tests and the bench: aiosmtpd on localhost with STARTTLS (a throw-away
certificate for localhost/127.0.0.1, made with `cryptography`) and AUTH (LOGIN/PLAIN, one user).
It can be stopped and started again on the same port (the "SMTP down, then up" drills)."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def make_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    message: email.message.EmailMessage
    at: float

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        return part.get_content() if part else ""


@dataclass
class SMTPServer:
    directory: Path
    username: str = "alerts@example.test"
    password: str = "s3cret-Pa55word!"
    refuse: set = field(default_factory=set)  # RCPT addresses answered 550
    busy: set = field(default_factory=set)  # RCPT addresses answered 450 (temporary)
    port: int = 0
    messages: list = field(default_factory=list)
    bad_logins: int = 0

    def __post_init__(self):
        self.port = self.port or free_port()
        self.cert, self.key = make_cert(self.directory)
        self._controller = None
        self._lock = threading.Lock()

    # aiosmtpd handler hooks
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        if address in self.busy:
            return "450 4.2.1 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, time.time()))
        return "250 Message accepted for delivery"

    def _auth(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        if not ok:
            self.bad_logins += 1
        return AuthResult(success=ok, handled=False)

    def start(self) -> "SMTPServer":
        from aiosmtpd.controller import Controller

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, server_hostname="localhost",
                                      tls_context=ctx, require_starttls=True, authenticator=self._auth,
                                      auth_required=True, auth_require_tls=True, ready_timeout=5)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def env(self, **extra) -> str:
        lines = {"SMTP_HOST": "localhost", "SMTP_PORT": str(self.port), "SMTP_USERNAME": self.username,
                 "SMTP_PASSWORD": self.password, "SMTP_FROM": "catalyst@example.test", "SMTP_TLS": "true",
                 "ALERT_EMAIL_CRITICAL": "oncall@example.test", "ALERT_EMAIL_WARNING": "ops@example.test",
                 "ALERT_EMAIL_INFO": "ops@example.test"}
        lines.update(extra)
        return "".join(f"{k}='{v}'\n" if v is not None else "" for k, v in lines.items())

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self._lock:
            return list(self.messages)
