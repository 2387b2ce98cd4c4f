"""`slawatch check [CATALOG]`: validate a catalog and show internal view vs external promise.

This is the ITIL "balance" as a table: for each service, what its customers were
promised (kind, SLA target) against what the teams' component KPIs can carry
(supported availability). A service whose components cannot carry its SLA has a KPI
gap, and the components that would help most are named, so the conversation with the
owning team can start before the month's report, not after.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from agents.connection import env_value

DEFAULT_CATALOG = "config/services.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "catalog",
        nargs="?",
        default=env_value("SLAWATCH_CATALOG", DEFAULT_CATALOG),
        help="catalog file (default: $SLAWATCH_CATALOG or config/services.yaml)",
    )


def _pct(x: float) -> str:
    return f"{x * 100:.4f}%"


def _hours(h: float) -> str:
    return f"{h:g}"


def render(catalog_path: str, out: TextIO) -> int:
    from streams.catalog import CatalogError, load_catalog

    try:
        catalog = load_catalog(catalog_path)
    except CatalogError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    rows: list[tuple[str, ...]] = []
    services = sorted(catalog.services.values(), key=lambda s: (s.kind != "external", s.name))
    for svc in services:
        supported = catalog.supported_availability(svc.name)
        gap = supported < svc.target
        weakest = ""
        if gap:
            weakest = ", ".join(
                f"{comp} (kpi {_pct(catalog.components[comp].kpi or 1.0)})"
                for comp, _ in catalog.weakest_components(svc.name)
            )
        st = catalog.service_times.get(svc.service_time) if svc.service_time else None
        rows.append((
            svc.name,
            svc.kind,
            ",".join(svc.customers) or "-",
            f"{_pct(svc.target)} / {svc.period.label}",
            "24x7 (168 h/week)" if st is None else f"{st.name} ({_hours(st.hours_per_week)} h/week)",
            _pct(supported),
            "GAP" if gap else "ok",
            weakest,
        ))
    header = ("service", "kind", "customers", "SLA target", "service time", "supported", "kpi",
              "pulled down by")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
    gaps = sum(1 for r in rows if r[6] == "GAP")
    if catalog.service_times:
        print("\nservice times (CONTRACT §6):", file=out)
        for st in catalog.service_times.values():
            print(f"  {st.name}: {st.schedule.describe()}, {_hours(st.hours_per_week)} h/week",
                  file=out)
    if catalog.maintenance:
        print("\nmaintenance windows:", file=out)
        for w in catalog.maintenance:
            named = ", ".join([*sorted(w.components), *(f"service {s}" for s in sorted(w.services))])
            print(f"  {w.name}: {w.describe()}: {named}", file=out)
    print(
        f"\n{catalog_path}: {len(catalog.services)} services, {len(catalog.components)} components, "
        f"{gaps} with a KPI gap (component KPIs cannot carry the SLA target)",
        file=out,
    )
    return 0


def run(args: argparse.Namespace) -> int:
    return render(args.catalog, sys.stdout)
