"""Alert email, policy and outbox against a real SMTP server (aiosmtpd, STARTTLS + AUTH) and the
stand-in stack over real HTTP."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtpserver import SMTPServer  # noqa: E402


@pytest.fixture
def smtp(tmp_path):
    server = SMTPServer(tmp_path / "smtp").start()
    yield server
    server.stop()


def wire(standin, smtp, alerts: str = "", **env) -> None:
    """Point the stand-in's ops.yml and .env at the SMTP server."""
    with open(standin.env_file, "a") as fh:
        fh.write(smtp.env(**env))
    standin.append_config(f"alerts:\n  ca_file: {smtp.cert}\n  smtp_timeout: 5\n" + alerts)


def db(standin):
    return sqlite3.connect(standin.state_db)


def once(standin) -> dict:
    res = standin.cli("monitor", "--once", "--json")
    assert res.code in (0, 1), res.text
    return json.loads(res.out)


# ------------------------------------------------------------------ alert test


def test_alert_test_delivers_over_starttls_with_login(standin, smtp):
    wire(standin, smtp)
    res = standin.cli("alert", "test")
    assert res.code == 0, res.text
    assert "accepted by localhost" in res.out
    msgs = smtp.wait_for(1)
    assert len(msgs) == 1
    assert msgs[0].rcpt_tos == ["oncall@example.test"]
    assert msgs[0].subject.startswith("[Catalyst TEST] alert test from")
    assert "No action needed" in msgs[0].text


def test_alert_test_wrong_password_names_authentication(standin, smtp):
    wire(standin, smtp, SMTP_PASSWORD="Wr0ng-Secret-Pass")
    res = standin.cli("alert", "test")
    assert res.code == 3, res.text
    assert "authentication" in res.text
    assert "Wr0ng-Secret-Pass" not in res.text
    assert smtp.bad_logins >= 1 and smtp.messages == []
    j = standin.cli("alert", "test", "--json")
    assert j.code == 3 and json.loads(j.out)["failed"] == "authentication"
    assert "Wr0ng-Secret-Pass" not in j.text


@pytest.mark.parametrize("case,kind", [("dns", "DNS"), ("connect", "connect"), ("tls", "TLS"),
                                       ("recipient", "recipient refused")])
def test_alert_test_names_the_failing_step(standin, smtp, case, kind):
    if case == "dns":
        wire(standin, smtp, SMTP_HOST="no-such-host.invalid")
    elif case == "connect":
        smtp.stop()
        wire(standin, smtp)
    elif case == "tls":  # the server's certificate is not trusted without alerts.ca_file
        with open(standin.env_file, "a") as fh:
            fh.write(smtp.env())
    else:
        smtp.refuse.add("oncall@example.test")
        wire(standin, smtp)
    res = standin.cli("alert", "test", "--json", timeout=60)
    assert res.code == 3, res.text
    data = json.loads(res.out)
    assert data["failed"] == kind, data
    assert smtp.password not in res.text
    assert smtp.messages == []


def test_alert_test_without_smtp_is_a_config_error(standin):
    res = standin.cli("alert", "test")
    assert res.code == 2
    assert "SMTP_HOST" in res.err and "Traceback" not in res.text


def test_plan_spelling_single_alert_email(standin, smtp):
    wire(standin, smtp, SMTP_TLS=None, SMTP_USE_TLS="true", ALERT_EMAIL_CRITICAL=None, ALERT_EMAIL_WARNING=None,
         ALERT_EMAIL_INFO=None, ALERT_EMAIL="plan@example.test")
    res = standin.cli("alert", "test", "--severity", "info")
    assert res.code == 0, res.text
    assert smtp.wait_for(1)[0].rcpt_tos == ["plan@example.test"]


def _warnings(text: str, key: str) -> list[str]:
    return [ln for ln in text.splitlines() if " warning: " in ln and f": {key} " in ln]


def test_upstream_key_spellings_accepted_with_one_warning_each(standin, smtp):
    """Upstream's compose passes SMTP_SERVER and ALERT_EMAIL, its alerts code reads SMTP_USER: a .env
    written for it works, and each alias is named, with the file, once."""
    wire(standin, smtp, SMTP_HOST=None, SMTP_SERVER="localhost", SMTP_USERNAME=None, SMTP_USER=smtp.username,
         ALERT_EMAIL_CRITICAL=None, ALERT_EMAIL_WARNING=None, ALERT_EMAIL_INFO=None, ALERT_EMAIL="upstream@example.test")
    res = standin.cli("alert", "test", "--severity", "warning")
    assert res.code == 0, res.text
    assert smtp.wait_for(1)[0].rcpt_tos == ["upstream@example.test"]
    assert smtp.bad_logins == 0  # logged in as SMTP_USER
    for key in ("SMTP_SERVER", "SMTP_USER", "ALERT_EMAIL"):
        lines = _warnings(res.err, key)
        assert len(lines) == 1 and str(standin.env_file) in lines[0], res.err
    assert "read as SMTP_HOST" in _warnings(res.err, "SMTP_SERVER")[0]


def test_canonical_smtp_keys_win_over_the_aliases(standin, smtp):
    wire(standin, smtp, SMTP_SERVER="no-such-host.invalid", SMTP_USER="someone-else", ALERT_EMAIL="x@example.test")
    res = standin.cli("alert", "test")
    assert res.code == 0, res.text  # SMTP_HOST, SMTP_USERNAME and ALERT_EMAIL_CRITICAL were used
    assert smtp.wait_for(1)[0].rcpt_tos == ["oncall@example.test"]
    assert "SMTP_SERVER is ignored: SMTP_HOST is set" in _warnings(res.err, "SMTP_SERVER")[0]
    assert _warnings(res.err, "ALERT_EMAIL") == []  # every severity has its own key


def test_alias_warning_once_per_run_not_per_pass(standin, smtp, tmp_path):
    """The monitor loads the SMTP settings at every pass; its log gets the warning once."""
    import signal
    import subprocess

    wire(standin, smtp, "  interval: 0.2\n", SMTP_HOST=None, SMTP_SERVER="localhost")
    log_path = tmp_path / "monitor.log"
    with open(log_path, "wb") as fh:
        p = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(standin.config), "monitor"],
                             stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                n = db(standin).execute("SELECT COUNT(*) FROM health_sweeps WHERE source='monitor'").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n >= 5:
                break
            time.sleep(0.1)
        assert n >= 5
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert len(_warnings(log_path.read_text(), "SMTP_SERVER")) == 1, log_path.read_text()


def test_conflicting_tls_keys_are_refused(standin, smtp):
    wire(standin, smtp, SMTP_USE_TLS="false")
    res = standin.cli("alert", "test")
    assert res.code == 2
    assert "SMTP_TLS and SMTP_USE_TLS disagree" in res.err


# ------------------------------------------------------------------ policy


def test_first_failure_repeat_at_nth_and_recovery(standin, smtp):
    wire(standin, smtp, alerts="  repeat_every: 3\n  cooldown: 0\n")
    standin.fault("scanner", "down")
    once(standin)  # failure 1: alert
    msgs = smtp.wait_for(1)
    assert len(msgs) == 1
    assert msgs[0].subject == "[Catalyst CRITICAL] FAILING: scanner"
    assert msgs[0].rcpt_tos == ["oncall@example.test"]
    assert "- scanner: failing (down: connection refused" in msgs[0].text
    assert "scanner" in msgs[0].html
    once(standin)  # failure 2: nothing
    time.sleep(0.3)
    assert len(smtp.messages) == 1
    once(standin)  # failure 3 = N: repeat
    msgs = smtp.wait_for(2)
    assert len(msgs) == 2
    assert msgs[1].subject == "[Catalyst CRITICAL] STILL FAILING: scanner"
    assert "still failing, 3 consecutive failed checks" in msgs[1].text
    standin.sandbox("restart", "scanner")
    once(standin)  # recovered
    msgs = smtp.wait_for(3)
    assert len(msgs) == 3
    assert msgs[2].subject == "[Catalyst INFO] RECOVERED: scanner"
    assert msgs[2].rcpt_tos == ["ops@example.test"]
    assert "- scanner: recovered (healthy" in msgs[2].text
    once(standin)  # healthy again: silence
    time.sleep(0.3)
    assert len(smtp.messages) == 3
    rows = db(standin).execute("SELECT status FROM alerts").fetchall()
    assert rows == [("sent",)] * 3


def test_no_repeat_inside_cooldown(standin, smtp):
    wire(standin, smtp, alerts="  repeat_every: 2\n  cooldown: 3600\n")
    standin.fault("news", "500", "--sticky")
    for _ in range(5):  # failures 1..5: the 2nd and 4th would repeat, the cooldown holds them back
        once(standin)
    time.sleep(0.3)
    assert [m.subject for m in smtp.messages] == ["[Catalyst CRITICAL] FAILING: news"]
    row = db(standin).execute("SELECT suppressed, count_at_alert FROM alert_state WHERE subject_key='service:news'").fetchone()
    assert row == (4, 1)  # failures 2..5 each found a multiple of N passed, each held back
    # the cooldown has passed (the clock moved on): the next multiple of N alerts
    later = standin.cli("--now", "2099-01-01T12:00:00+00:00", "monitor", "--once")
    assert later.code == 1
    msgs = smtp.wait_for(2)
    assert len(msgs) == 2
    # in 2099 the dead-man conditions (no health job, no backup) fire too: one grouped message
    assert "STILL FAILING: news" in msgs[1].subject
    assert "- news: still failing, 6 consecutive failed checks" in msgs[1].text


def test_several_services_failing_in_one_sweep_give_one_message(standin, smtp):
    wire(standin, smtp)
    for svc in ("scanner", "pattern", "reporting"):
        standin.fault(svc, "500", "--sticky")
    standin.fault("technical", "degraded", "--sticky")
    once(standin)
    time.sleep(0.5)
    msgs = smtp.messages
    crit = [m for m in msgs if "CRITICAL" in m.subject]
    warn = [m for m in msgs if "WARNING" in m.subject]
    assert len(msgs) == 2, [m.subject for m in msgs]
    assert crit[0].subject == "[Catalyst CRITICAL] FAILING: 3 services: scanner, pattern, reporting"
    for svc in ("scanner", "pattern", "reporting"):
        assert f"- {svc}: failing (unhealthy: HTTP 500" in crit[0].text
    assert warn[0].subject == "[Catalyst WARNING] DEGRADED: technical"
    assert warn[0].rcpt_tos == ["ops@example.test"]


# ------------------------------------------------------------------ outbox


def test_smtp_down_three_alerts_then_up_nothing_lost_nothing_twice(standin, smtp):
    wire(standin, smtp, alerts="  retry_base: 0.2\n  retry_max: 0.5\n")
    smtp.stop()
    for svc in ("scanner", "news", "pattern"):  # three sweeps, three separate alerts
        standin.fault(svc, "500", "--sticky")
        once(standin)
        time.sleep(0.6)  # past the backoff: every sweep tries (and fails) again
    rows = db(standin).execute("SELECT status, attempts, last_error FROM alerts ORDER BY id").fetchall()
    assert len(rows) == 3 and all(r[0] == "pending" for r in rows), rows
    assert rows[0][1] >= 2 and "connect" in rows[0][2]
    smtp.start()
    once(standin)
    msgs = smtp.wait_for(1)
    time.sleep(0.3)
    once(standin)  # and again: nothing twice
    time.sleep(0.3)
    msgs = smtp.messages
    assert len(msgs) == 1, [m.subject for m in msgs]  # the backlog went out grouped
    assert msgs[0].subject.startswith("[Catalyst CRITICAL] 3 alerts: FAILING: scanner; FAILING: news; FAILING: pattern")
    for svc in ("scanner", "news", "pattern"):
        assert msgs[0].text.count(f"- {svc}: failing") == 1
    ids = sorted(int(i) for i in msgs[0].message["X-Catalyst-Alert-Ids"].split(","))
    assert ids == [1, 2, 3]
    assert db(standin).execute("SELECT status FROM alerts").fetchall() == [("sent",)] * 3


def test_backoff_grows_and_is_capped(standin, smtp):
    wire(standin, smtp, alerts="  retry_base: 10\n  retry_max: 40\n")
    smtp.stop()
    standin.cli("alert", "send", "critical", "drill")
    waits = []
    for i in range(4):
        # each attempt at a moment past the previous backoff
        res = standin.cli("--now", f"2099-01-01T00:{i * 2:02d}:00+00:00", "monitor", "--once", "--json")
        row = db(standin).execute("SELECT failures, next_attempt_at FROM alert_channels WHERE channel='email'").fetchone()
        waits.append(round(row[1] - time.mktime(time.strptime(f"2099-01-01 00:{i * 2:02d}:00", "%Y-%m-%d %H:%M:%S"))
                           + time.timezone))
    # --now advances with real time while each process runs: allow a second or two of drift
    for got, want in zip(waits, [10, 20, 40, 40]):
        assert want <= got <= want + 3, waits
    assert db(standin).execute("SELECT status FROM alerts").fetchone() == ("pending",)


def _statuses(standin) -> dict:
    return {r[0]: r[1] for r in db(standin).execute("SELECT subject, status FROM alerts")}


def test_a_refused_warning_route_does_not_hold_back_the_critical_alert(standin, smtp):
    """ops@ (warning route) answered 550: the critical alert queued behind the warning still goes
    out; after alerts.refused_attempts refusals the warning is given up on and an alert naming the
    refused route goes to the critical route."""
    wire(standin, smtp, alerts="  refused_attempts: 2\n")
    smtp.refuse.add("ops@example.test")
    assert standin.cli("alert", "send", "warning", "disk at 91%", "df says so").code == 0
    assert standin.cli("alert", "send", "critical", "broker unreachable", "timed out").code == 0
    res = standin.cli("alert", "flush")
    assert res.code == 3 and "550" in res.out, res.text
    msgs = smtp.wait_for(1)
    assert [(m.subject, m.rcpt_tos) for m in msgs] == [("[Catalyst CRITICAL] broker unreachable", ["oncall@example.test"])]
    assert _statuses(standin) == {"disk at 91%": "pending", "broker unreachable": "sent"}
    res = standin.cli("alert", "flush")  # the second refusal: given up, and said so on the other route
    assert res.code == 3, res.text
    msgs = smtp.wait_for(2)
    assert len(msgs) == 2, [m.subject for m in msgs]
    assert msgs[1].subject == "[Catalyst CRITICAL] ALERT ROUTE REFUSED: warning -> ops@example.test"
    assert msgs[1].rcpt_tos == ["oncall@example.test"]
    assert "disk at 91%" in msgs[1].text and "550" in msgs[1].text
    st = _statuses(standin)
    assert st["disk at 91%"] == "failed" and st["broker unreachable"] == "sent"
    assert st["ALERT ROUTE REFUSED: warning -> ops@example.test"] == "sent"
    res = standin.cli("alert", "flush")  # nothing left owed: nothing sent, nothing failed
    assert res.code == 0, res.text
    time.sleep(0.2)
    assert len(smtp.messages) == 2
    listed = json.loads(standin.cli("alert", "list", "--status", "failed", "--json").out)
    assert [r["subject"] for r in listed] == ["disk at 91%"] and "550" in listed[0]["last_error"]


def test_a_temporary_refusal_backs_off_and_is_never_given_up(standin, smtp):
    wire(standin, smtp, alerts="  refused_attempts: 1\n")
    smtp.busy.add("ops@example.test")
    standin.cli("alert", "send", "warning", "disk at 91%")
    standin.cli("alert", "send", "critical", "broker unreachable")
    for _ in range(3):
        res = standin.cli("alert", "flush")
        assert res.code == 3 and "450" in res.out, res.text
    assert [m.subject for m in smtp.wait_for(1)] == ["[Catalyst CRITICAL] broker unreachable"]
    assert _statuses(standin) == {"disk at 91%": "pending", "broker unreachable": "sent"}  # no route alert either
    smtp.busy.clear()
    res = standin.cli("alert", "flush")
    assert res.code == 0, res.text
    assert [m.subject for m in smtp.wait_for(2)][1] == "[Catalyst WARNING] disk at 91%"
    assert set(_statuses(standin).values()) == {"sent"}


def test_a_refused_route_backs_off_alone(standin, smtp):
    """The monitor's flush respects the refused route's backoff, and the critical route is not held by it."""
    wire(standin, smtp, alerts="  retry_base: 600\n  retry_max: 600\n")
    smtp.refuse.add("ops@example.test")
    standin.cli("alert", "send", "warning", "disk at 91%")
    once(standin)
    standin.cli("alert", "send", "critical", "broker unreachable")
    once(standin)  # inside the warning route's backoff: the critical route goes
    assert [m.subject for m in smtp.wait_for(1)] == ["[Catalyst CRITICAL] broker unreachable"]
    row = db(standin).execute("SELECT failures, refusals FROM alert_routes WHERE route LIKE 'warning%'").fetchone()
    assert row == (1, 1)  # tried once, not again inside its backoff


def test_flush_dry_run_sends_nothing(standin, smtp):
    wire(standin, smtp)
    standin.cli("alert", "send", "warning", "disk at 91%", "df says so")
    res = standin.cli("alert", "flush", "--dry-run")
    assert res.code == 0 and "would send via warning -> ops@example.test: [Catalyst WARNING] disk at 91%" in res.out
    assert smtp.messages == []
    res = standin.cli("alert", "flush")
    assert res.code == 0, res.text
    assert [m.subject for m in smtp.wait_for(1)] == ["[Catalyst WARNING] disk at 91%"]
    listed = json.loads(standin.cli("alert", "list", "--json").out)
    assert listed[0]["status"] == "sent" and listed[0]["body"] == "df says so"


def test_failed_scheduled_job_alerts_and_recovers(standin, smtp):
    wire(standin, smtp)
    text = standin.config.read_text()
    broken = text.replace("    start: ", "    start: /bin/false #")
    standin.config.write_text(broken)
    res = standin.cli("start", "--no-wait")
    assert res.code != 0
    msgs = smtp.wait_for(1)
    assert len(msgs) == 1
    assert msgs[0].subject.startswith(f"[Catalyst CRITICAL] JOB FAILED: start (exit {res.code})")
    assert "The scheduled job start failed" in msgs[0].text or "could not run" in msgs[0].text
    standin.config.write_text(text)
    res = standin.cli("start", "--no-wait")
    assert res.code == 0, res.text
    msgs = smtp.wait_for(2)
    assert [m.subject for m in msgs][1] == "[Catalyst INFO] RECOVERED: job start"


def test_scheduled_job_that_cannot_load_its_config_alerts(standin, smtp):
    """From cron (CATALYST_OPS_SCHEDULED=1, set by the crontab) an exit 2 is a job that never runs:
    alerted on the config's alert settings even though the config itself does not load. By hand it
    is the operator's typo: not alerted."""
    wire(standin, smtp)
    text = standin.config.read_text()
    standin.config.write_text(text.replace("host_timezone: America/New_York", "host_timezone: Mars/Olympus"))
    res = standin.cli("backup")  # the operator, by hand
    assert res.code == 2 and "host_timezone" in res.err, res.text
    time.sleep(0.3)
    assert smtp.messages == []
    res = standin.cli("market-open", env={"CATALYST_OPS_SCHEDULED": "1"})
    assert res.code == 2 and "host_timezone" in res.err, res.text
    msgs = smtp.wait_for(1)
    assert len(msgs) == 1 and msgs[0].subject == "[Catalyst CRITICAL] JOB FAILED: market-open (exit 2)"
    assert "could not start" in msgs[0].text and "host_timezone" in msgs[0].text and "Mars/Olympus" in msgs[0].text


def test_health_job_alerts_and_watches_the_monitor(standin, smtp):
    wire(standin, smtp)
    standin.fault("trading", "unhealthy", "--sticky")
    res = standin.cli("health", "--no-restart")
    assert res.code == 1
    msgs = smtp.wait_for(2)
    subjects = sorted(m.subject for m in msgs)
    assert subjects == ["[Catalyst CRITICAL] 2 alerts: FAILING: trading; WATCHDOG: the monitor daemon is not running"] \
        or subjects == sorted(["[Catalyst CRITICAL] FAILING: trading",
                               "[Catalyst CRITICAL] WATCHDOG: the monitor daemon is not running"]), subjects
    body = "\n".join(m.text for m in msgs)
    assert "never sent a heartbeat" in body and "trading: failing (unhealthy: HTTP 200 status=unhealthy" in body
    # a monitor pass heartbeats; the next health run clears the watchdog
    once(standin)
    n = len(smtp.messages)
    res = standin.cli("health", "--no-restart")
    msgs = smtp.wait_for(n + 1)
    assert "[Catalyst INFO] CLEARED: the monitor daemon is back" in [m.subject for m in msgs]


# ------------------------------------------------------------------ webhook (second channel)


class _Hook:
    """A real HTTP endpoint on localhost that records JSON POSTs; `status` is what it answers."""

    def __init__(self):
        import http.server
        import threading

        self.posts, self.status = [], 200
        hook = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.status == 200:
                    hook.posts.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0KEN-abcdef"


def test_webhook_and_email_each_get_it_once(standin, smtp):
    hook = _Hook()
    try:
        hook.status = 503
        wire(standin, smtp, alerts=f"  webhook_url: {hook.url}\n")
        res = standin.cli("alert", "send", "critical", "broker unreachable", "GET /v2/account timed out", "--flush")
        assert res.code == 3 and "HTTP 503" in res.out
        assert "T0KEN" not in res.text  # a hook URL is a credential
        assert len(smtp.wait_for(1)) == 1  # email accepted...
        assert db(standin).execute("SELECT status FROM alerts").fetchone() == ("pending",)  # ...webhook owed
        hook.status = 200
        res = standin.cli("alert", "flush")
        assert res.code == 0, res.text
        assert len(hook.posts) == 1 and hook.posts[0]["severity"] == "critical"
        assert hook.posts[0]["title"] == "[Catalyst CRITICAL] broker unreachable"
        assert hook.posts[0]["alerts"][0]["body"] == "GET /v2/account timed out"
        time.sleep(0.2)
        assert len(smtp.messages) == 1  # email not sent twice
        assert db(standin).execute("SELECT status FROM alerts").fetchone() == ("sent",)
    finally:
        hook.server.shutdown()


def test_job_with_its_own_alert_gets_one_message_then_a_recovery(standin, smtp):
    """market-open raises its own critical alert when the workflow is down: the generic
    'JOB FAILED' is not sent on top, but the next good run still sends the recovery."""
    wire(standin, smtp)
    standin.fault("workflow", "down")
    tuesday_open = "2026-11-24T09:30:00-05:00"
    res = standin.cli("--now", tuesday_open, "market-open")
    assert res.code == 3, res.text
    msgs = smtp.wait_for(1)
    time.sleep(0.5)
    assert len(smtp.messages) == 1, [m.subject for m in smtp.messages]
    assert "market-open" in msgs[0].subject and "JOB FAILED" not in msgs[0].subject
    standin.sandbox("restart", "workflow")
    res = standin.cli("--now", "2026-11-24T09:31:00-05:00", "market-open")
    assert res.code == 0, res.text
    msgs = smtp.wait_for(2)
    assert msgs[1].subject == "[Catalyst INFO] RECOVERED: job market-open"
