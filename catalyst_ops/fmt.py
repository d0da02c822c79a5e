"""Plain-text tables and small formatting helpers shared by the reports."""

from __future__ import annotations

from datetime import datetime, timezone


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ts(epoch: float | None, tz=None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz or timezone.utc).strftime("%Y-%m-%d %H:%M:%S %Z")


def size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def money(v, signed: bool = False) -> str:
    """1,234.50 (or +1,234.50 with signed); '-' for no value."""
    if v is None:
        return "-"
    return f"{v:+,.2f}" if signed else f"{v:,.2f}"
