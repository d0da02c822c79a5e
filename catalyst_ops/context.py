"""What every command receives: parsed arguments plus lazily loaded config and state."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


class Context:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._cfg = None
        self._db = None
        self.summary = ""  # one line recorded with the job run
        self.status: str | None = None  # override of the recorded status ("skipped")
        self.session_date: str | None = None

    @property
    def cfg(self):
        if self._cfg is None:
            from catalyst_ops import config

            self._cfg = config.load(getattr(self.args, "config", None))
        return self._cfg

    @property
    def db(self):
        if self._db is None:
            from catalyst_ops.state import open_state

            self._db = open_state(self.cfg)
        return self._db

    @property
    def dry_run(self) -> bool:
        return bool(getattr(self.args, "dry_run", False))

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def emit_json(self, data: Any) -> None:
        json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")

    def out(self, text: str = "") -> None:
        print(text)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
