"""Mail DNS of the alert sender's domain (plan phase 3.1): the SPF, DKIM and DMARC records it
needs, looked up through a real resolver and judged.

Alerts that land in spam are alerts nobody reads: a sender domain without SPF naming the SMTP
provider, a DKIM key or an enforcing DMARC policy is how that happens. What "good" means:
- SPF: exactly one `v=spf1` TXT record at the domain (two are a permanent error for receivers),
  with `include:<provider>` and ending in `~all` or `-all`;
- DKIM: a TXT record at `<selector>._domainkey.<domain>` with a non-empty public key (`p=`);
- DMARC: exactly one `v=DMARC1` TXT record at `_dmarc.<domain>` with `p=quarantine` or
  `p=reject` (and `rua=` naming the configured report address, when one is configured).

dnspython is imported only here, and this module only by `alert dns`: no other path pays for it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import asdict, dataclass, field
from email.utils import parseaddr

from catalyst_ops.errors import CannotRun, ConfigError

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_ALL = re.compile(r"^[+?~-]?all$", re.I)


@dataclass
class Settings:
    domain: str
    spf_include: str
    dkim_selector: str
    dmarc_policy: str = "quarantine"
    dmarc_rua: str = ""
    resolver: str = ""
    port: int = 53
    timeout: float = 5.0
    tcp: bool = False

    @property
    def where(self) -> str:
        proto = "tcp" if self.tcp else "udp"
        return f"{self.resolver}:{self.port} ({proto})" if self.resolver else f"the host's resolver ({proto})"


@dataclass
class Record:
    record: str  # SPF | DKIM | DMARC
    name: str
    want: str  # the record to create (or the one that would fix what was found)
    found: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    looked_up: bool = False
    error: str = ""  # the lookup got no answer

    @property
    def ok(self) -> bool:
        return self.looked_up and not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _hostname(value: str, key: str, source: str) -> str:
    name = value.strip().lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")) or "." not in name:
        raise ConfigError(source, key, f"expected a domain name like example.com, got {value!r}")
    return name


def settings(cfg, overrides: dict | None = None) -> Settings:
    """alerts.dns of the config, with command-line overrides (None: not given). The domain defaults to
    that of the .env's SMTP_FROM (else SMTP_USERNAME): the address the alerts are sent from."""
    d = cfg.alerts.dns
    o = {k: v for k, v in (overrides or {}).items() if v is not None}

    def pick(key: str, flag: str):
        if key in o:
            return o[key], flag, "command line"
        return getattr(d, key), f"alerts.dns.{key}", cfg.source

    domain, key, src = pick("domain", "--domain")
    if not str(domain).strip():
        env = cfg.env(required=False)
        sender = env.get("SMTP_FROM", "").strip() or env.get("SMTP_USERNAME", "").strip()
        addr = parseaddr(sender)[1]
        if "@" not in addr:
            raise ConfigError(cfg.source, "alerts.dns.domain", "expected the sender's domain (--domain), or an address in "
                              f"SMTP_FROM / SMTP_USERNAME of {cfg.env_file} to take it from")
        domain, key, src = addr.rsplit("@", 1)[1], "SMTP_FROM", cfg.env_file
    domain = _hostname(str(domain), key, src)

    include, key, src = pick("spf_include", "--spf-include")
    include = str(include).strip().lower()
    include = include[len("include:"):] if include.startswith("include:") else include
    if not include:
        raise ConfigError(cfg.source, "alerts.dns.spf_include", "expected the SMTP provider's SPF include, e.g. "
                          "sendgrid.net or mailgun.org (--spf-include)")
    include = _hostname(include, key, src)

    selector, key, src = pick("dkim_selector", "--dkim-selector")
    selector = str(selector).strip().lower()
    if not selector:
        raise ConfigError(cfg.source, "alerts.dns.dkim_selector", "expected the provider's DKIM selector, e.g. s1 "
                          "(the record is <selector>._domainkey.<domain>) (--dkim-selector)")
    if not all(_LABEL.match(p) for p in selector.split(".")):
        raise ConfigError(src, key, f"expected a DKIM selector (letters, digits, '-', '_'), got {selector!r}")

    policy, key, src = pick("dmarc_policy", "--dmarc-policy")
    if policy not in ("quarantine", "reject"):
        raise ConfigError(src, key, f"expected quarantine or reject, got {policy!r}")

    rua, key, src = pick("dmarc_rua", "--dmarc-rua")
    rua = str(rua).strip()
    rua = rua[len("mailto:"):] if rua.lower().startswith("mailto:") else rua
    if rua and not re.match(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$", rua):
        raise ConfigError(src, key, f"expected an email address for DMARC reports, got {rua!r}")

    resolver, key, src = pick("resolver", "--resolver")
    resolver = str(resolver).strip()
    if resolver:
        try:
            resolver = str(ipaddress.ip_address(resolver))
        except ValueError:
            raise ConfigError(src, key, f"expected the resolver's IP address (e.g. 127.0.0.53), got {resolver!r}")
    port, key, src = pick("port", "--resolver-port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(src, key, f"expected a port 1-65535, got {port!r}")
    timeout = float(o.get("timeout", d.timeout))
    tcp = bool(o.get("tcp", d.tcp))
    return Settings(domain, include, selector, policy, rua, resolver, port, timeout, tcp)


# ---------------------------------------------------------------- the records we want


def spf_want(s: Settings, found: list[str]) -> str:
    """One SPF record: every mechanism of the ones found (merged, in order), the provider's include,
    and ~all (or -all if one of them already said so)."""
    terms: list[str] = []
    strict = False
    for rec in found:
        for t in rec.split()[1:]:
            if _ALL.match(t):
                strict = strict or t.lower() == "-all"
            elif t.lower() not in (x.lower() for x in terms):
                terms.append(t)
    if not any(t.lower().lstrip("+") == f"include:{s.spf_include}" for t in terms):
        terms.append(f"include:{s.spf_include}")
    return " ".join(["v=spf1", *terms, "-all" if strict else "~all"])


def dkim_want(s: Settings) -> str:
    return "v=DKIM1; k=rsa; p=<the public key your SMTP provider gives for this selector>"


def dmarc_want(s: Settings) -> str:
    return f"v=DMARC1; p={s.dmarc_policy}" + (f"; rua=mailto:{s.dmarc_rua}" if s.dmarc_rua else "")


def zone_line(name: str, text: str) -> str:
    """The record in zone-file syntax; TXT strings are at most 255 characters, so long ones are split."""
    parts = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    quoted = " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)
    return f"{name}. TXT {quoted}"


def tags(text: str) -> dict[str, str]:
    """`k=v; k=v` (DKIM and DMARC tag lists); tag names are case-insensitive."""
    out = {}
    for part in text.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out.setdefault(k.strip().lower(), v.strip())
    return out


# ---------------------------------------------------------------- judging


def judge_spf(s: Settings, txts: list[str]) -> Record:
    # sorted: DNS hands out an RRset in any order, and the merged fix must not change with it
    spf = sorted(t.strip() for t in txts if re.match(r"(?i)^v=spf1(\s|$)", t.strip()))
    r = Record("SPF", s.domain, spf_want(s, spf), spf, looked_up=True)
    if not spf:
        r.problems.append(f"no SPF record (TXT \"v=spf1 ...\") at {s.domain}")
        return r
    if len(spf) > 1:
        r.problems.append(f"{len(spf)} SPF records at {s.domain}: receivers treat more than one as a permanent error "
                          "(SPF fails); merge them into one")
        return r
    terms = spf[0].split()[1:]
    if not any(t.lower().lstrip("+") == f"include:{s.spf_include}" for t in terms):
        r.problems.append(f"the SPF record does not include the SMTP provider (include:{s.spf_include})")
    last = terms[-1].lower() if terms else ""
    if last not in ("~all", "-all"):
        r.problems.append(f"the SPF record ends in {last or 'nothing'!r}: expected ~all or -all, so other senders "
                          "of the domain fail")
    return r


def judge_dkim(s: Settings, txts: list[str]) -> Record:
    name = f"{s.dkim_selector}._domainkey.{s.domain}"
    recs = [t.strip() for t in txts if "p" in tags(t) or tags(t).get("v", "").upper() == "DKIM1"]
    r = Record("DKIM", name, dkim_want(s), recs, looked_up=True)
    if not recs:
        r.problems.append(f"no DKIM record at {name} (selector {s.dkim_selector!r})")
        return r
    if len(recs) > 1:
        r.problems.append(f"{len(recs)} DKIM records at {name}: keep the one your provider signs with")
        return r
    tg = tags(recs[0])
    if "v" in tg and tg["v"].upper() != "DKIM1":
        r.problems.append(f"the DKIM record has v={tg['v']}: expected v=DKIM1")
    key = re.sub(r"\s+", "", tg.get("p", ""))
    if not key:
        r.problems.append("the DKIM record has no public key (an empty p= means the key was revoked)")
    else:
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) < 32:  # an ed25519 key is 32 bytes, an RSA one hundreds
            r.problems.append("the DKIM record's p= is not a base64 public key")
        else:
            r.want = recs[0]
    return r


def judge_dmarc(s: Settings, txts: list[str]) -> Record:
    name = f"_dmarc.{s.domain}"
    recs = [t.strip() for t in txts if re.match(r"(?i)^v\s*=\s*DMARC1\s*(;|$)", t.strip())]
    r = Record("DMARC", name, dmarc_want(s), recs, looked_up=True)
    if not recs:
        r.problems.append(f"no DMARC record at {name}")
        return r
    if len(recs) > 1:
        r.problems.append(f"{len(recs)} DMARC records at {name}: receivers then ignore DMARC; keep one")
        return r
    tg = tags(recs[0])
    p = tg.get("p", "").lower()
    if p not in ("quarantine", "reject"):
        r.problems.append(f"DMARC policy p={p or '(missing)'}: mail failing SPF/DKIM is still delivered; "
                          "expected p=quarantine or p=reject")
    if s.dmarc_rua:
        rua = [a.strip().lower().removeprefix("mailto:") for a in tg.get("rua", "").split(",") if a.strip()]
        if s.dmarc_rua.lower() not in rua:
            r.problems.append(f"DMARC reports do not go to {s.dmarc_rua} (rua={tg.get('rua', '') or 'none'})")
    if not r.problems:
        r.want = recs[0]
    return r


# ---------------------------------------------------------------- lookups


class _Unanswered(Exception):
    pass


def _resolver(s: Settings):
    import dns.resolver

    if s.resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [s.resolver]
    else:
        try:
            r = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise CannotRun("DNS: the host has no resolver configured (/etc/resolv.conf); set alerts.dns.resolver")
    r.port = s.port
    r.timeout = s.timeout
    r.lifetime = s.timeout
    return r


def lookup_txt(resolver, name: str, tcp: bool) -> list[str]:
    """TXT strings at name ([] when the name or the record does not exist); each record's strings are
    joined without a separator, as SPF, DKIM and DMARC readers do. _Unanswered: no usable answer."""
    import dns.exception
    import dns.resolver

    try:
        ans = resolver.resolve(name, "TXT", tcp=tcp, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return []
    except dns.exception.DNSException as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise _Unanswered(f"{name}: {text}")
    if ans.rrset is None:
        return []
    return [b"".join(rd.strings).decode("utf-8", "replace") for rd in ans.rrset]


@dataclass
class Result:
    settings: Settings
    records: list[Record]
    unanswered: str = ""

    @property
    def problems(self) -> list[tuple[Record, str]]:
        return [(r, p) for r in self.records for p in r.problems]

    def as_dict(self) -> dict:
        s = self.settings
        return {"domain": s.domain, "resolver": s.resolver or None, "port": s.port, "tcp": s.tcp, "spf_include": s.spf_include,
                "dkim_selector": s.dkim_selector, "ok": not self.unanswered and not self.problems,
                "unanswered": self.unanswered or None, "records": [r.as_dict() for r in self.records],
                "create": [zone_line(r.name, r.want) for r in self.records]}


def check(s: Settings) -> Result:
    """Look the three records up and judge them. One lookup without an answer stops the rest: the
    resolver is not answering, and waiting out the others only delays the verdict."""
    res = _resolver(s)
    out = Result(s, [])
    lookups = ((s.domain, judge_spf, Record("SPF", s.domain, spf_want(s, []))),
               (f"{s.dkim_selector}._domainkey.{s.domain}", judge_dkim, Record("DKIM", f"{s.dkim_selector}._domainkey.{s.domain}", dkim_want(s))),
               (f"_dmarc.{s.domain}", judge_dmarc, Record("DMARC", f"_dmarc.{s.domain}", dmarc_want(s))))
    for name, judge, blank in lookups:
        if out.unanswered:
            out.records.append(blank)
            continue
        try:
            out.records.append(judge(s, lookup_txt(res, name, s.tcp)))
        except _Unanswered as exc:
            out.unanswered = str(exc)
            blank.error = str(exc)
            out.records.append(blank)
    return out


def render_text(result: Result) -> str:
    from catalyst_ops.fmt import table

    s = result.settings
    rows = []
    for r in result.records:
        verdict = "ok" if r.ok else ("NO ANSWER" if not r.looked_up else "FAIL")
        found = " | ".join(r.found) if r.found else ("-" if r.looked_up else "(not looked up)")
        rows.append([r.record, r.name, verdict, found if len(found) <= 70 else found[:67] + "..."])
    lines = [f"mail DNS of {s.domain} (SPF include:{s.spf_include}, DKIM selector {s.dkim_selector}), "
             f"asked {s.where}:", table(rows, ["RECORD", "NAME", "RESULT", "FOUND"])]
    if result.unanswered:
        lines += ["", f"no answer from the resolver: {result.unanswered}"]
    if result.problems:
        lines += ["", "problems, each with the record that fixes it:"]
        for r in result.records:
            for p in r.problems:
                lines.append(f"  {r.record}: {p}")
            if r.problems:
                lines.append(f"    fix: {zone_line(r.name, r.want)}")
    lines += ["", "records the domain needs (zone-file syntax):"] + [f"  {zone_line(r.name, r.want)}" for r in result.records]
    return "\n".join(lines) + "\n"
