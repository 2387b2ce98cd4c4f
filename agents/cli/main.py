"""`slawatch` command line: one subcommand per module, each owning its own flags.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; the
dispatcher imports it only when chosen, so `slawatch check` never pays for importing Faust.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "worker": ("agents.cli.worker", "start one Faust worker (consume, compute, serve /metrics)"),
    "publish": ("agents.clients.publish", "publish component events (JSON lines on stdin, or flags)"),
    "check": ("agents.cli.check", "validate a catalog and print the internal-vs-external table"),
    "demo": ("agents.clients.demo", "embedded broker + worker + failure simulator on this machine"),
    "simulate": ("agents.clients.simulator", "publish realistic failures for a catalog"),
    "report": ("agents.cli.report", "SLA report of a calendar month (table, csv, json, html)"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``chosen`` subcommand's module is imported for its flags."""
    parser = argparse.ArgumentParser(
        prog="slawatch",
        description="Business-service SLA monitoring from component up/down events.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(p)
        p.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in SUBCOMMANDS else None).parse_args(argv)
    module = importlib.import_module(args._module)
    result: int = module.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
