"""Every flag that reads a SLAWATCH_* variable says so in ``--help``.

Operators configure containers through the environment; a variable that works but is
not named in the help is one they never find. The variables are found by watching what
building each subcommand's parser reads, not from a list kept here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

import pytest

from agents.cli.main import SUBCOMMANDS, build_parser


class _Watched(dict[str, str]):
    """``os.environ`` stand-in that records every name looked up."""

    def __init__(self, base: dict[str, str]) -> None:
        super().__init__(base)
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def _actions(parser: argparse.ArgumentParser, name: str) -> Iterator[argparse.Action]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    yield from sub.choices[name]._actions


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_variable_a_flag_reads_is_in_its_help(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = _Watched({k: v for k, v in os.environ.items() if not k.startswith("SLAWATCH_")})
    monkeypatch.setattr(os, "environ", watched)
    parser = build_parser(command)
    missing = []
    for action in _actions(parser, command):
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        variable = "SLAWATCH_" + action.dest.upper()
        if variable in watched.read and variable not in (action.help or ""):
            missing.append(f"{action.option_strings[-1]} reads ${variable}")
    assert not missing, f"slawatch {command} --help does not name: " + "; ".join(missing)


#: The arguments a subcommand cannot start without.
_REQUIRED = {"report": ["--period", "current"]}


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_a_variable_set_empty_is_the_same_as_unset(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compose files and Helm values often write `SLAWATCH_X: ""` for "not set".
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLAWATCH_")}
    watched = _Watched(base)
    monkeypatch.setattr(os, "environ", watched)
    unset = vars(build_parser(command).parse_args([command, *_REQUIRED.get(command, [])]))
    names = sorted(n for n in watched.read if n.startswith("SLAWATCH_"))
    assert names, f"slawatch {command} reads no SLAWATCH_* variable"
    monkeypatch.setattr(os, "environ", _Watched(base | {n: "" for n in names}))
    empty = vars(build_parser(command).parse_args([command, *_REQUIRED.get(command, [])]))
    assert empty == unset
