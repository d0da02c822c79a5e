"""`catalyst-ops alert dns` against a real authoritative DNS server (NSD) on localhost, over UDP and TCP:
a good zone passes; each bad zone fails naming its problem and the record that fixes it; no resolver
answering is exit 3."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import run_cli
from dnsserver import NSD, NsdServer, free_udp_tcp_port, txt

PROVIDER = "spf.provider.test"


def _dkim_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _zones() -> dict:
    key = _dkim_key()
    dkim = ("s1._domainkey", "TXT", txt(f"v=DKIM1; k=rsa; p={key}"))  # > 255 characters: several strings
    verify = ("@", "TXT", txt("google-site-verification=abc123"))  # not SPF: ignored
    good_spf = ("@", "TXT", txt(f"v=spf1 ip4:192.0.2.10 include:{PROVIDER} ~all"))
    dmarc = ("_dmarc", "TXT", txt("v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test"))
    return {
        "good.mail.test": [good_spf, verify, dkim, dmarc],
        "nospf.mail.test": [verify, dkim, dmarc],
        "twospf.mail.test": [("@", "TXT", txt(f"v=spf1 include:{PROVIDER} ~all")),
                             ("@", "TXT", txt("v=spf1 include:_spf.other.test -all")), dkim, dmarc],
        "noinclude.mail.test": [("@", "TXT", txt("v=spf1 include:_spf.other.test ~all")), dkim, dmarc],
        "dmarcnone.mail.test": [good_spf, dkim, ("_dmarc", "TXT", txt("v=DMARC1; p=none"))],
        "nodkim.mail.test": [good_spf, ("s2._domainkey", "TXT", txt(f"v=DKIM1; k=rsa; p={key}")), dmarc],
        # more TXT at the apex than fits a UDP answer: the resolver must retry over TCP
        "big.mail.test": [good_spf, dkim, dmarc] + [("@", "TXT", txt(f"filler-{i}-" + "x" * 240)) for i in range(8)],
    }


@pytest.fixture(scope="module")
def nsd():
    if not NSD:
        pytest.skip("nsd not installed (Debian package nsd; scripts/setup.sh --test installs it)")
    server = NsdServer(_zones()).start()
    yield server
    server.stop()


def _config(tmp_path, port: int, extra: str = "", sender: str = "alerts@good.mail.test") -> str:
    env = tmp_path / ".env"
    env.write_text(f"SMTP_HOST=127.0.0.1\nSMTP_FROM={sender}\n")
    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"""state_path: {tmp_path / 'state.db'}
env_file: {env}
alerts:
  dns:
    resolver: 127.0.0.1
    port: {port}
    spf_include: {PROVIDER}
    dkim_selector: s1
    timeout: 3
{extra}""")
    return str(cfg)


def dns_check(tmp_path, port: int, *args: str, extra: str = ""):
    return run_cli("alert", "dns", *args, config=_config(tmp_path, port, extra))


def test_good_zone_passes_over_udp_and_tcp(nsd, tmp_path):
    res = dns_check(tmp_path, nsd.port, "--json")  # the domain comes from the .env's SMTP_FROM
    assert res.code == 0, res.text
    data = json.loads(res.out)
    assert data["domain"] == "good.mail.test" and data["ok"]
    rec = {r["record"]: r for r in data["records"]}
    assert rec["SPF"]["found"] == [f"v=spf1 ip4:192.0.2.10 include:{PROVIDER} ~all"]
    # the DKIM key is split in 255-character strings in the zone; the check joins them
    assert rec["DKIM"]["name"] == "s1._domainkey.good.mail.test" and len(rec["DKIM"]["found"][0]) > 300
    assert rec["DMARC"]["found"] == ["v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test"]
    tcp = dns_check(tmp_path, nsd.port, "--tcp")
    assert tcp.code == 0, tcp.text
    assert "(tcp)" in tcp.out and "SPF, DKIM" not in tcp.err
    assert "records the domain needs" in tcp.out
    assert f'good.mail.test. TXT "v=spf1 ip4:192.0.2.10 include:{PROVIDER} ~all"' in tcp.out


def test_a_truncated_udp_answer_is_retried_over_tcp(nsd, tmp_path):
    import dns.flags
    import dns.message
    import dns.query

    q = dns.message.make_query("big.mail.test", "TXT")
    assert dns.query.udp(q, "127.0.0.1", port=nsd.port, timeout=3).flags & dns.flags.TC  # UDP alone cannot carry it
    res = dns_check(tmp_path, nsd.port, "--domain", "big.mail.test", "--json")
    assert res.code == 0, res.text
    spf = {r["record"]: r for r in json.loads(res.out)["records"]}["SPF"]
    assert spf["ok"] and spf["found"] == [f"v=spf1 ip4:192.0.2.10 include:{PROVIDER} ~all"]


@pytest.mark.parametrize("domain,record,problem,fix", [
    ("nospf.mail.test", "SPF", "no SPF record", f'nospf.mail.test. TXT "v=spf1 include:{PROVIDER} ~all"'),
    ("twospf.mail.test", "SPF", "2 SPF records at twospf.mail.test",
     f'twospf.mail.test. TXT "v=spf1 include:_spf.other.test include:{PROVIDER} -all"'),
    ("noinclude.mail.test", "SPF", f"does not include the SMTP provider (include:{PROVIDER})",
     f'noinclude.mail.test. TXT "v=spf1 include:_spf.other.test include:{PROVIDER} ~all"'),
    ("dmarcnone.mail.test", "DMARC", "DMARC policy p=none", '_dmarc.dmarcnone.mail.test. TXT "v=DMARC1; p=quarantine"'),
    ("nodkim.mail.test", "DKIM", "no DKIM record at s1._domainkey.nodkim.mail.test",
     's1._domainkey.nodkim.mail.test. TXT "v=DKIM1; k=rsa; p=<the public key'),
])
def test_each_bad_zone_fails_naming_its_problem_and_fix(nsd, tmp_path, domain, record, problem, fix):
    res = dns_check(tmp_path, nsd.port, "--domain", domain, "--json")
    assert res.code == 1, res.text
    data = json.loads(res.out)
    bad = [r for r in data["records"] if not r["ok"]]
    assert [r["record"] for r in bad] == [record]  # only the broken record, the others pass
    assert any(problem in p for p in bad[0]["problems"]), bad[0]["problems"]
    assert any(line.startswith(fix) for line in data["create"]), data["create"]
    text = dns_check(tmp_path, nsd.port, "--domain", domain)
    assert text.code == 1
    assert f"{record}: " in text.out and problem in text.out and f"fix: {fix}" in text.out


def test_dmarc_report_address_is_checked_when_configured(nsd, tmp_path):
    res = dns_check(tmp_path, nsd.port, "--dmarc-rua", "reports@good.mail.test")
    assert res.code == 1
    assert "DMARC reports do not go to reports@good.mail.test" in res.out
    assert '_dmarc.good.mail.test. TXT "v=DMARC1; p=quarantine; rua=mailto:reports@good.mail.test"' in res.out


def test_no_resolver_answering_is_exit_3(nsd, tmp_path):
    silent = free_udp_tcp_port()  # nothing listens there
    res = dns_check(tmp_path, silent, "--json")
    assert res.code == 3, res.text
    data = json.loads(res.out)
    assert data["unanswered"] and not data["ok"]
    assert [r["looked_up"] for r in data["records"]] == [False, False, False]
    # a server that answers, but refuses the domain (not a resolver for it): no verdict either
    res = dns_check(tmp_path, nsd.port, "--domain", "elsewhere.test")
    assert res.code == 3 and "no answer from the resolver" in res.out and "REFUSED" in res.out
    # over TCP too
    assert dns_check(tmp_path, silent, "--tcp").code == 3


@pytest.mark.parametrize("extra,args,needle", [
    ("", ("--spf-include", ""), "alerts.dns.spf_include: expected the SMTP provider's SPF include"),
    ("", ("--resolver", "dns.example.test"), "command line: --resolver: expected the resolver's IP address"),
    ("", ("--domain", "not a domain"), "--domain: expected a domain name"),
    ("", ("--resolver-port", "0"), "--resolver-port: expected a port 1-65535"),
    ("  bogus: 1\n", (), "alerts.dns.bogus: unknown key"),
])
def test_bad_settings_are_one_line_exit_2(tmp_path, extra, args, needle):
    cfg = _config(tmp_path, 53, extra.replace("  bogus", "    bogus"))
    res = run_cli("alert", "dns", *args, config=cfg)
    assert res.code == 2, res.text
    assert needle in res.err and "Traceback" not in res.err


def test_the_domain_defaults_to_the_sender_of_the_env(tmp_path):
    cfg = _config(tmp_path, 53, sender="")
    res = run_cli("alert", "dns", config=cfg)
    assert res.code == 2 and "alerts.dns.domain: expected the sender's domain" in res.err


# ---------------------------------------------------------------------- the email role's check


def _role_play(tmp_path, config: str, extra: dict, *args: str):
    """The email role's DNS tasks (tasks/dns.yml with the role's defaults), run by a real ansible-playbook
    on this machine against the test's DNS server."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    role = repo / "ansible" / "roles" / "catalyst_email"
    bindir = Path(sys.executable).parent
    if not (bindir / "ansible-playbook").exists():
        pytest.skip("ansible-core not installed")
    play = tmp_path / "dns-play.yml"
    play.write_text(f"""- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{role / 'defaults' / 'main.yml'}]
  tasks:
    - ansible.builtin.import_tasks: {role / 'tasks' / 'dns.yml'}
""")
    variables = {"catalyst_ops_bin": str(bindir / "catalyst-ops"), "catalyst_ops_config": config,
                 "ansible_python_interpreter": sys.executable, **extra}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    env.pop("CATALYST_OPS_CONFIG", None)
    p = subprocess.run([str(bindir / "ansible-playbook"), str(play), "-e", json.dumps(variables), *args],
                       capture_output=True, text=True, env=env, timeout=180)
    return p.returncode, p.stdout + p.stderr


def test_email_role_warns_and_never_fails_or_changes(nsd, tmp_path):
    # unset include and selector in ops.yml: the role passes its own variables
    cfg = tmp_path / "ops.yml"
    (tmp_path / ".env").write_text("SMTP_HOST=127.0.0.1\nSMTP_FROM=alerts@good.mail.test\n")
    cfg.write_text(f"state_path: {tmp_path / 'state.db'}\nenv_file: {tmp_path / '.env'}\n")
    base = {"catalyst_email_enabled": True, "catalyst_mail_spf_include": PROVIDER, "catalyst_mail_dkim_selector": "s1",
            "catalyst_mail_dns_resolver": "127.0.0.1", "catalyst_mail_dns_resolver_port": nsd.port}

    rc, out = _role_play(tmp_path, str(cfg), base)
    assert rc == 0, out
    assert "changed=0" in out and "failed=0" in out and "WARNING" not in out

    rc, out = _role_play(tmp_path, str(cfg), {**base, "catalyst_mail_domain": "dmarcnone.mail.test"})
    assert rc == 0, out
    assert "changed=0" in out and "failed=0" in out
    assert "WARNING: the sender domain's mail DNS records have problems" in out
    assert "DMARC policy p=none" in out and '_dmarc.dmarcnone.mail.test. TXT \\"v=DMARC1; p=quarantine\\"' in out

    # an isolated droplet: nothing answers. A warning, not a failure; the same under --check
    silent = {**base, "catalyst_mail_dns_resolver_port": free_udp_tcp_port()}
    for extra_args in ((), ("--check",)):
        rc, out = _role_play(tmp_path, str(cfg), silent, *extra_args)
        assert rc == 0, out
        assert "changed=0" in out and "failed=0" in out
        assert "WARNING: mail DNS not checked: no DNS resolver answered" in out

    # not configured (the role's defaults): says what to set
    rc, out = _role_play(tmp_path, str(cfg), {"catalyst_email_enabled": True})
    assert rc == 0 and "changed=0" in out, out
    assert "WARNING: mail DNS not checked: set catalyst_mail_spf_include" in out
    assert "alerts.dns.spf_include: expected the SMTP provider's SPF include" in out

    # catalyst-ops not installed yet (check mode on a fresh host): skipped, not failed
    rc, out = _role_play(tmp_path, str(cfg), {**base, "catalyst_ops_bin": str(tmp_path / "nope")}, "--check")
    assert rc == 0 and "failed=0" in out and "WARNING" not in out, out
