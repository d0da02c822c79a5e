"""argparse types for numbers: finite and in range, or a one-line usage error (exit 2).

`type=float` accepts "nan" and "inf": a NaN deadline fails every comparison, so a wait bounded by it
never ends. Every numeric option goes through one of these instead.
"""

from __future__ import annotations

import argparse
import math


def number(low: float | None = None, high: float | None = None, *, above: bool = False, what: str = "a number"):
    """A finite float, at least `low` (more than `low` when `above`) and at most `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"expected {'more than' if above else 'at least'} {low:g}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:g}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its message
    return parse


def integer(low: int | None = None, high: int | None = None, what: str = "an integer"):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"expected at least {low}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high}, got {text!r}")
        return value

    parse.__name__ = what
    return parse
