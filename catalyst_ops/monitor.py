"""The monitor daemon: every alerts.interval, a concurrent health sweep, the alert policy, the
dead-man checks, a heartbeat and an outbox flush.

Everything it knows is in the state DB (failure counts, cooldowns, the outbox), so a restart,
even after SIGKILL, continues where it was. The passes run in a worker thread; the main thread
only waits for a signal, so SIGTERM ends the process within a second even while a sweep is
waiting on a hung service (an unfinished pass is abandoned; its DB writes are transactions).
The monitor does not restart services: that stays with the cron health job (bounded restarts).
Under systemd the loop thread itself tells the watchdog it is alive (sdnotify), so a loop that
hangs is restarted, while the main thread, which never hangs, stays silent.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from catalyst_ops import clock

log = logging.getLogger("catalyst_ops.monitor")


class Monitor:
    def __init__(self, cfg, db, stop: threading.Event | None = None):
        self.cfg = cfg
        self.db = db
        self.stop = stop or threading.Event()
        self.passes = 0
        self.error: BaseException | None = None

    def one_pass(self) -> dict:
        from catalyst_ops import health
        from catalyst_ops.alerts import deadman, outbox, policy

        started = clock.timestamp()
        t0 = time.monotonic()
        results = health.sweep(self.cfg)
        if self.stop.is_set():
            return {}
        health.record_sweep(self.db, results, "monitor", started)
        raised = policy.apply_services(self.cfg, self.db, results, "monitor")
        try:
            dead = deadman.check(self.cfg, self.db)
        except Exception as exc:  # a dead-man bug must not stop the sweeps and the sending
            log.error("dead-man checks failed: %s: %s", exc.__class__.__name__, exc)
            dead = []
        failed = [r.service for r in results if r.failed]
        degraded = [r.service for r in results if r.state == health.DEGRADED]
        self.db.heartbeat("monitor", f"{len(results) - len(failed)}/{len(results)} ok")
        flushed = outbox.FlushResult()
        if not self.stop.is_set():
            try:
                flushed = outbox.flush(self.cfg, self.db)
            except Exception as exc:  # e.g. a bad SMTP block in the .env: keep sweeping, keep the outbox
                from catalyst_ops import log as oplog

                log.error("alert flush failed: %s", oplog.redact(str(exc)))
        self.passes += 1
        summary = {"pass": self.passes, "seconds": round(time.monotonic() - t0, 3), "failed": failed,
                   "degraded": degraded, "alerts_raised": raised, "messages_sent": flushed.messages,
                   "pending": flushed.waiting, "deadman": [d["check"] for d in dead if d["alert"]]}
        level = logging.WARNING if failed else logging.INFO
        log.log(level, "sweep %d: %d services, %s%s%s; %d message(s) sent, %d pending", self.passes, len(results),
                f"failed: {', '.join(failed)}" if failed else "all up",
                f"; degraded: {', '.join(degraded)}" if degraded else "",
                f"; raised {len(raised)} alert(s)" if raised else "", flushed.messages, flushed.waiting)
        return summary

    def loop(self) -> None:
        from catalyst_ops import sdnotify

        interval = self.cfg.alerts.interval
        wd = sdnotify.watchdog_seconds()
        # beat at least twice per watchdog period while waiting between passes; a pass itself must
        # end inside the period (every call in it has a timeout), else systemd restarts the monitor
        beat = min(interval, wd / 2) if wd else interval
        try:
            sdnotify.notify("READY=1", "WATCHDOG=1", f"STATUS=sweeping every {interval:g}s")
            while not self.stop.is_set():
                t0 = time.monotonic()
                status = ""
                try:
                    s = self.one_pass()
                    if s:
                        status = (f"sweep {s['pass']}: " + (f"failed: {', '.join(s['failed'])}" if s["failed"]
                                                             else "all up") + f"; {s['pending']} alert(s) pending")
                except Exception as exc:  # a DB hiccup: log, wait an interval, try again
                    from catalyst_ops import log as oplog

                    log.error("sweep failed: %s: %s", exc.__class__.__name__, oplog.redact(str(exc)))
                    status = f"sweep failed: {exc.__class__.__name__}"
                # only this thread beats, and only between passes: a pass that hangs stops the beat
                sdnotify.notify("WATCHDOG=1", *([f"STATUS={status}"] if status else []))
                # the interval is from start to start; a slow sweep is not followed by a full wait
                while not self.stop.is_set():
                    left = interval - (time.monotonic() - t0)
                    if left <= 0 or self.stop.wait(min(left, beat)):
                        break
                    sdnotify.notify("WATCHDOG=1")
            sdnotify.notify("STOPPING=1")
        except BaseException as exc:  # pragma: no cover - surfaced by run()
            self.error = exc

    def run(self, install_signals: bool = True) -> int:
        if install_signals:
            def on_signal(signum, frame):
                log.info("received %s: stopping", signal.Signals(signum).name)
                self.stop.set()

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        log.info("monitor started (pid %d): %d services every %gs, state %s", os.getpid(),
                 len(self.cfg.enabled_services()), self.cfg.alerts.interval, self.cfg.state_path)
        worker = threading.Thread(target=self.loop, name="monitor-loop", daemon=True)
        worker.start()
        while not self.stop.wait(0.2):
            if not worker.is_alive():
                break
        # give a pass that is mid-send or mid-commit a moment; then leave (an unfinished one is abandoned)
        worker.join(0.6)
        if self.error is not None:
            log.error("monitor loop died: %s", self.error)
            return 3
        log.info("monitor stopped after %d sweep(s)", self.passes)
        return 0
