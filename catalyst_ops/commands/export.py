"""`catalyst-ops export prometheus`: textfile-collector metrics for node_exporter."""

from __future__ import annotations

import argparse

from catalyst_ops.errors import OK


def register(sub) -> None:
    p = sub.add_parser("export", help="export state to other systems (export prometheus)",
                       description="Export the state DB to other monitoring systems.")
    esub = p.add_subparsers(dest="export_kind", metavar="KIND")
    m = esub.add_parser("prometheus", help="Prometheus textfile-collector metrics",
                        description="Write Prometheus metrics (service up, last successful run per job, last backup time "
                        "and size, alerts pending, halt flag, trading mode, monitor heartbeat) for node_exporter's textfile "
                        "collector: DIR/catalyst.prom, written to a temp file and renamed so a scrape never reads half a "
                        "file. Without --textfile the metrics go to stdout. Run it from cron every minute or so.")
    m.add_argument("--textfile", metavar="DIR", help="node_exporter's --collector.textfile.directory")
    m.add_argument("--dry-run", action="store_true", help="print what would be written; write nothing")
    m.set_defaults(func=run_prometheus)
    p.set_defaults(func=lambda ctx, args: (p.print_help(), 2)[1])


def run_prometheus(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import prometheus

    text = prometheus.collect(ctx.cfg, ctx.db)
    if not args.textfile or args.dry_run:
        ctx.out(text.rstrip("\n"))
        return OK
    path = prometheus.write_textfile(args.textfile, text)
    ctx.summary = f"wrote {path}"
    return OK
