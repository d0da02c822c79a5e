"""The cron-fired commands build only their own module's parsers: the table in cli.FAST must name
the module that really registers each, with the same options as the full parser."""

from __future__ import annotations

import argparse

import pytest

from catalyst_ops import cli


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in (a.option_strings or [a.dest])}


@pytest.mark.parametrize("command", sorted(cli.FAST))
def test_fast_table_matches_the_full_parser(command):
    full = _subcommands(cli.build_parser())
    fast = _subcommands(cli.build_parser(only=cli.FAST[command]))
    assert command in full and command in fast
    assert _options(fast[command]) == _options(full[command])
    # the same code (a command with sub-commands defaults to a lambda, made anew per parser)
    assert fast[command].get_default("func").__code__ is full[command].get_default("func").__code__
    for name, sub in _subcommands(full[command]).items():
        assert _options(_subcommands(fast[command])[name]) == _options(sub)


def test_every_scheduled_job_is_on_the_fast_path():
    from catalyst_ops.schedule import JOBS

    assert {job.args[0] for job in JOBS} <= set(cli.FAST)


@pytest.mark.parametrize("argv,command", [
    (["--config", "scan", "market-open"], "market-open"),
    (["--now", "2026-11-27T13:00:00-05:00", "-v", "scan", "--slot", "13:00"], "scan"),
    (["--config=/etc/x.yml", "health"], "health"),
    (["--version"], None),
    ([], None),
])
def test_command_word(argv, command):
    assert cli.command_of(argv) == command
