"""The service catalog (CONTRACT §2): internal components, external services.

Validation is strict on purpose: a misspelt component would count as "up" forever and
a misspelt key would silently drop a promise, so every error names the file, the
service (or component) and the field, and all errors are reported at once.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import yaml

from streams import native
from streams.calendars import (
    CalendarError,
    MaintenanceWindow,
    ServiceCalendar,
    ServiceTime,
    WeeklySchedule,
    parse_date,
    parse_instant,
    parse_weekly,
    zone,
)
from streams.durations import parse_duration
from streams.events import COMPONENT_ID, remember_valid
from streams.requirements import (
    AllOf,
    AnyOf,
    AtLeast,
    Blamer,
    IndexedBlamer,
    IndexedStateFn,
    Leaf,
    MaskBlamer,
    MaskStateFn,
    ProgramNode,
    Requirement,
    Resolver,
    ServiceRef,
    StateFn,
    blame,
    compile_indexed,
    compile_masks,
    evaluate,
    indexed_slots,
    leaves,
    mask_program,
    mask_shape,
    masks_via_list,
    supported,
)
from streams.states import State

KINDS = ("internal", "external")
_BLAME_CACHE_MAX = 4096


def _unset_state(down: int, bad: int) -> int:
    raise AssertionError("ServiceModel.__post_init__ replaces this")


def _unset_blame(down: int) -> int:
    raise AssertionError("ServiceModel.__post_init__ replaces this")
_SERVICE_KEYS = {"kind", "customers", "sla", "restore_time", "requires", "description"}
_COMPONENT_KEYS = {"team", "kpi", "description"}
_TOP_KEYS = ("components", "services", "service_times", "maintenance")
_SERVICE_TIME_KEYS = {"timezone", "weekly", "except", "description"}
_MAINTENANCE_KEYS = {"name", "components", "services", "weekly", "timezone", "start", "end",
                     "description"}


class CatalogError(ValueError):
    """The catalog cannot be used; ``problems`` lists every reason found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid catalog ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True, slots=True)
class Component:
    id: str
    team: str | None = None
    kpi: float | None = None


@dataclass(frozen=True, slots=True)
class Period:
    """An SLA period: a rolling duration, or the calendar month so far, in
    ``timezone`` (the service time's zone, CONTRACT §6; None: UTC)."""

    seconds: float | None
    calendar_month: bool = False
    timezone: str | None = None

    @property
    def label(self) -> str:
        from streams.durations import format_duration

        return "month" if self.calendar_month else format_duration(self.seconds or 0.0)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    kind: str
    customers: tuple[str, ...]
    target: float
    period: Period
    restore_time: float | None
    requires: AllOf
    service_time: str | None = None  # a name of ``Catalog.service_times``; None: 24x7


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """What a tracker needs to evaluate one service: compiled, catalog-derived, stateless.

    ``state_ix``/``blame_ix`` are the hot path: they read a list of states with one slot
    per component, ``slots[i]`` being slot i's id (``index`` the reverse). ``state_of``
    and ``blame`` take a ``{component: State}`` mapping instead.
    """

    name: str
    components: frozenset[str]
    state_of: StateFn  # states -> int(State)
    blame: Blamer
    requires: AllOf
    slots: tuple[str, ...]
    index: dict[str, int]
    state_ix: IndexedStateFn
    blame_ix: IndexedBlamer
    #: The batch path's form (``ServiceTracker.apply_many``): ``bits[c]`` is component c's
    #: bit, bits numbered in sorted order of the ids (``mask_names``), so a mask of blamed
    #: components reads out sorted; ``state_mask(down, bad)`` and ``blame_bits(down)`` are
    #: ``state_ix``/``blame_ix`` over bitmasks (see ``compile_masks``), ``up_state`` the
    #: state with every component up. Derived from the above when not given.
    mask_names: tuple[str, ...] = ()
    bits: dict[str, int] = field(default_factory=dict)
    state_mask: MaskStateFn = _unset_state
    blame_bits: MaskBlamer = _unset_blame
    up_state: int = 0
    blame_cache: dict[int, tuple[str, ...]] = field(default_factory=dict, compare=False)
    #: ``state_mask`` as data (``requirements.mask_program``), for models of at most 64
    #: components; None for larger ones.
    program: tuple[ProgramNode, ...] | None = None
    #: What the C loop of ``apply_many`` needs of this model (``_native.compile_plan``),
    #: when the extension is loaded; else None.
    plan: object = field(default=None, compare=False, init=False)

    def __post_init__(self) -> None:
        if not self.mask_names:
            object.__setattr__(self, "mask_names", tuple(sorted(self.slots)))
        if not self.bits:
            object.__setattr__(self, "bits", {c: 1 << i for i, c in enumerate(self.mask_names)})
        if self.state_mask is _unset_state or self.blame_bits is _unset_blame:
            state_fn, blame_fn = masks_via_list(self.state_ix, self.blame_ix, self.slots, self.mask_names)
            object.__setattr__(self, "state_mask", state_fn)
            object.__setattr__(self, "blame_bits", blame_fn)
        object.__setattr__(self, "up_state", self.state_mask(0, 0))
        fast = native.native
        plan = None
        if fast is not None:
            plan = fast.compile_plan(self.program, self.bits, self.blame_cache, self.state_mask,
                                     self.up_state, self.mask_names, _BLAME_CACHE_MAX)
        object.__setattr__(self, "plan", plan)

    def state(self, states: Mapping[str, State]) -> State:
        return State(self.state_of(states))

    def blame_mask(self, down: int) -> tuple[str, ...]:
        """The components blamed when those whose bit is set in ``down`` are down (blame
        reads nothing else), sorted; memoised, as the same few sets recur."""
        cache = self.blame_cache
        tag = cache.get(down)
        if tag is None:
            out = self.blame_bits(down)
            names = self.mask_names
            found = []
            while out:
                low = out & -out
                found.append(names[low.bit_length() - 1])
                out ^= low
            tag = tuple(found)
            if native.native is not None:
                native.native.untrack(tag)  # only strings: see _native.c plan_blame_tag
            if len(cache) < _BLAME_CACHE_MAX:
                cache[down] = tag
        return tag

    @classmethod
    def build(cls, name: str, requires: AllOf, components: frozenset[str], resolve: Resolver) -> ServiceModel:
        slots = indexed_slots(requires, resolve)
        lazy = _LazyIndexed(requires, resolve, slots)
        state_ix, blame_ix = lazy.state, lazy.blame

        def state_of_mapping(s: Mapping[str, State]) -> int:
            return state_ix([s[c] for c in slots])

        def blame_of_mapping(s: Mapping[str, State]) -> tuple[str, ...]:
            return blame_ix([s[c] for c in slots], slots)

        names = tuple(sorted(slots))
        state_mask: MaskStateFn = _unset_state  # __post_init__ wraps the list-based ones
        blame_bits: MaskBlamer = _unset_blame
        shape = None
        with contextlib.suppress(RecursionError, SyntaxError, MemoryError):
            shape = mask_shape(requires, resolve, names)
            state_mask, blame_bits = compile_masks(requires, resolve, names, shape)
        program = None
        if len(names) <= 64:
            with contextlib.suppress(RecursionError):
                program = tuple(mask_program(requires, resolve, names, shape))
        return cls(name, components, state_of_mapping, blame_of_mapping, requires, slots,
                   {c: i for i, c in enumerate(slots)}, state_ix, blame_ix,
                   mask_names=names, state_mask=state_mask, blame_bits=blame_bits,
                   program=program)


class _LazyIndexed:
    """``compile_indexed``'s pair, compiled on first use: the trackers' hot path runs on
    the bitmask functions, so most models never need these (and compiling costs ~0.5 ms
    a service at start-up). Absurdly deep trees exceed the compiler's nesting limits:
    those are interpreted."""

    __slots__ = ("fns", "requires", "resolve", "slots")

    def __init__(self, requires: AllOf, resolve: Resolver, slots: tuple[str, ...]) -> None:
        self.requires, self.resolve, self.slots = requires, resolve, slots
        self.fns: tuple[IndexedStateFn, IndexedBlamer] | None = None

    def _load(self) -> tuple[IndexedStateFn, IndexedBlamer]:
        requires, resolve, slots = self.requires, self.resolve, self.slots
        try:
            compiled_slots, state_fn, blame_fn = compile_indexed(requires, resolve)
            if compiled_slots != slots:
                raise AssertionError(f"slot order {compiled_slots} != {slots}")
        except (RecursionError, SyntaxError, MemoryError):

            def state_fn(s: list[int]) -> int:
                return _interpreted_state(requires, dict(zip(slots, map(State, s), strict=True)), resolve)

            def blame_fn(s: list[int], names: tuple[str, ...]) -> tuple[str, ...]:
                return blame(requires, dict(zip(names, map(State, s), strict=True)), resolve)

        self.fns = (state_fn, blame_fn)
        return self.fns

    def state(self, s: list[int]) -> int:
        return (self.fns or self._load())[0](s)

    def blame(self, s: list[int], names: tuple[str, ...]) -> tuple[str, ...]:
        return (self.fns or self._load())[1](s, names)


def _interpreted_state(requires: AllOf, states: Mapping[str, State], resolve: Resolver) -> int:
    if not evaluate(requires, states, resolve, planned=False):
        return int(State.DOWN)
    if not evaluate(requires, states, resolve, planned=True):
        return int(State.MAINTENANCE)
    return int(State.UP)


class _Models(dict[str, ServiceModel]):
    """Service models compiled on first use: start-up stays fast for big catalogs."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self._catalog = catalog

    def __missing__(self, name: str) -> ServiceModel:
        cat = self._catalog
        model = ServiceModel.build(name, cat.services[name].requires, cat.components_of(name), cat.resolve)
        self[name] = model
        return model

    def get(self, name: str, default: ServiceModel | None = None) -> ServiceModel | None:  # type: ignore[override]
        return self[name] if name in self._catalog.services else default


@dataclass(frozen=True)
class Catalog:
    components: dict[str, Component]
    services: dict[str, Service]
    source: str = "<catalog>"
    service_times: dict[str, ServiceTime] = field(default_factory=dict)
    maintenance: tuple[MaintenanceWindow, ...] = ()

    def resolve(self, name: str) -> Requirement:
        return self.services[name].requires

    @cached_property
    def _calendars(self) -> dict[str, ServiceCalendar]:
        out: dict[str, ServiceCalendar] = {}
        for name, svc in self.services.items():
            st = self.service_times.get(svc.service_time) if svc.service_time else None
            comps = self._components_of[name]
            svcs = frozenset({name, *self._services_of(name)})
            windows = tuple(w for w in self.maintenance
                            if w.components & comps or w.services & svcs)
            if st is not None or windows:
                out[name] = ServiceCalendar(name, st, windows, svc.requires, self.resolve,
                                            comps, svcs)
        return out

    def _services_of(self, service: str) -> set[str]:
        """Every service ``service`` requires through ``service:``, transitively."""
        out: set[str] = set()
        stack: list[Requirement] = [self.services[service].requires]
        while stack:
            node = stack.pop()
            if isinstance(node, ServiceRef):
                if node.service not in out:
                    out.add(node.service)
                    stack.append(self.services[node.service].requires)
            elif not isinstance(node, Leaf):
                stack.extend(node.items)
        return out

    def calendar(self, service: str) -> ServiceCalendar | None:
        """The service time and maintenance windows of ``service`` (CONTRACT §6);
        None for a service agreed 24x7 that no window touches."""
        return self._calendars.get(service)

    @cached_property
    def component_windows(self) -> dict[str, tuple[MaintenanceWindow, ...]]:
        """Per component named by a maintenance window, those windows."""
        out: dict[str, list[MaintenanceWindow]] = {}
        for w in self.maintenance:
            for c in sorted(w.components):
                out.setdefault(c, []).append(w)
        return {c: tuple(ws) for c, ws in out.items()}

    @cached_property
    def _components_of(self) -> dict[str, frozenset[str]]:
        return {
            name: frozenset(leaves(svc.requires, self.resolve))
            for name, svc in self.services.items()
        }

    @cached_property
    def _services_for(self) -> dict[str, tuple[str, ...]]:
        index: dict[str, list[str]] = {}
        for name in sorted(self.services):
            for comp in self._components_of[name]:
                index.setdefault(comp, []).append(name)
        return {comp: tuple(names) for comp, names in index.items()}

    @cached_property
    def models(self) -> _Models:
        return _Models(self)

    def build_models(self) -> int:
        """Build every service's model now (they are otherwise built at first use);
        returns how many were built."""
        models = self.models
        for name in self.services:
            _ = models[name]
        return len(self.services)

    def components_of(self, service: str) -> frozenset[str]:
        """Every component the service reads, directly or through ``service:``."""
        return self._components_of[service]

    @property
    def reverse_index(self) -> Mapping[str, tuple[str, ...]]:
        """``services_for`` as a mapping, for batch code that looks up every event."""
        return self._services_for

    def services_for(self, component: str) -> tuple[str, ...]:
        """Every service that depends on the component (the reverse index), sorted."""
        return self._services_for.get(component, ())

    def is_mapped(self, component: str) -> bool:
        return component in self._services_for

    @cached_property
    def _kpis(self) -> dict[str, float]:
        return {c.id: c.kpi for c in self.components.values() if c.kpi is not None}

    @cached_property
    def _supported(self) -> dict[str, float]:
        kpis, resolve = self._kpis, self.resolve
        return {name: supported(svc.requires, kpis, resolve) for name, svc in self.services.items()}

    def warm(self) -> None:
        """Build now the constants a service's report reads, each built once per
        catalog when first asked (at 10,000 services the supported availabilities
        alone are ~0.1 s): ahead of a first scrape."""
        _ = self._supported, self._components_of, self._calendars, self.component_windows

    def supported_availability(self, service: str) -> float:
        """A property of the catalog alone, so computed once per catalog."""
        return self._supported[service]

    def kpi_gap(self, service: str) -> bool:
        return self.supported_availability(service) < self.services[service].target

    def weakest_components(self, service: str, limit: int = 3) -> list[tuple[str, float]]:
        """Components whose KPI costs the service most: (id, availability gained if perfect).

        Components that account for under 1% of the unavailability are left out: naming
        a redundant DNS server next to a single mail server only muddies the message.
        """
        base = self.supported_availability(service)
        floor = 0.01 * (1.0 - base)
        gains: list[tuple[str, float]] = []
        for comp in sorted(self.components_of(service)):
            kpi = self._kpis.get(comp)
            if kpi is None or kpi >= 1.0:
                continue
            better = dict(self._kpis)
            better[comp] = 1.0
            gain = supported(self.services[service].requires, better, self.resolve) - base
            if gain > floor:
                gains.append((comp, gain))
        gains.sort(key=lambda item: (-item[1], item[0]))
        return gains[:limit]


_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file; raise CatalogError naming file, service, field."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    data: object = None
    if text.lstrip().startswith("{"):
        # JSON is YAML too, and orjson reads it ~60x faster than PyYAML (whose object
        # construction is Python even over libyaml): a catalog of 100,000 components
        # took 12.6 s and 430 MB as YAML, 0.2 s and 60 MB as JSON. What is not valid
        # JSON is read as YAML, with YAML's error messages.
        with contextlib.suppress(orjson.JSONDecodeError):
            data = orjson.loads(text)
    if data is None:
        try:
            data = yaml.load(text, Loader=_SAFE_LOADER)
        except yaml.YAMLError as exc:
            raise CatalogError(source, [f"not valid YAML: {exc}"]) from None
    return parse_catalog(data, source)


def parse_catalog(data: object, source: str = "<catalog>") -> Catalog:
    return _Parser(source).parse(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.service_times: dict[str, ServiceTime] = {}

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def parse(self, data: object) -> Catalog:
        if not isinstance(data, dict):
            raise CatalogError(self.source, ["the top level must be a mapping with "
                                             "`components:` and `services:`"])
        unknown = set(data) - set(_TOP_KEYS)
        for key in sorted(map(str, unknown)):
            self.problem(f"top level: field {key!r}",
                         "unknown field (expected components, services, service_times, maintenance)")
        components = self.components(data.get("components"))
        remember_valid(components)
        self.service_times = self.parse_service_times(data.get("service_times"))
        raw_services = data.get("services")
        if not isinstance(raw_services, dict) or not raw_services:
            self.problem("top level: field 'services'", "must be a non-empty mapping of services")
            raw_services = {}
        services: dict[str, Service] = {}
        for name, spec in raw_services.items():
            svc = self.service(str(name), spec, components, raw_services)
            if svc is not None:
                services[svc.name] = svc
        if not self.problems:
            self.check_cycles(services)
        maintenance = self.parse_maintenance(data.get("maintenance"), components, raw_services)
        if self.problems:
            raise CatalogError(self.source, self.problems)
        return Catalog(components=components, services=services, source=self.source,
                       service_times=self.service_times, maintenance=maintenance)

    def schedule(self, where: str, weekly: object, tz: object,
                 except_days: object = None) -> WeeklySchedule | None:
        """``weekly`` ranges in zone ``tz`` (less ``except`` days), or None with problems."""
        ok = True
        try:
            zone(tz)
        except CalendarError as exc:
            self.problem(f"{where}: field 'timezone'", str(exc))
            ok = False
        ranges = []
        if not isinstance(weekly, list) or not weekly:
            self.problem(f"{where}: field 'weekly'",
                         'must be a non-empty list like ["Mon-Fri 08:00-18:00"]')
            ok = False
        else:
            for i, text in enumerate(weekly):
                try:
                    ranges.append(parse_weekly(text))
                except CalendarError as exc:
                    self.problem(f"{where}: field 'weekly[{i}]'", str(exc))
                    ok = False
        days = set()
        if except_days is not None:
            if not isinstance(except_days, list):
                self.problem(f"{where}: field 'except'", 'must be a list of dates like ["2026-12-25"]')
                ok = False
            else:
                for i, text in enumerate(except_days):
                    try:
                        days.add(parse_date(text))
                    except CalendarError as exc:
                        self.problem(f"{where}: field 'except[{i}]'", str(exc))
                        ok = False
        if not ok:
            return None
        return WeeklySchedule(str(tz), tuple(ranges), frozenset(days))

    def parse_service_times(self, raw: object) -> dict[str, ServiceTime]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem("top level: field 'service_times'",
                         "must be a mapping of named calendars {name: {timezone, weekly, except}}")
            return {}
        out: dict[str, ServiceTime] = {}
        for name, spec in raw.items():
            where = f"service_times {str(name)!r}"
            if not isinstance(spec, dict):
                self.problem(where, "must be a mapping with timezone, weekly and except")
                continue
            for key in sorted(map(str, set(spec) - _SERVICE_TIME_KEYS)):
                self.problem(f"{where}: field {key!r}", "unknown field (expected timezone, weekly, except)")
            if "timezone" not in spec:
                self.problem(f"{where}: field 'timezone'", "missing (an IANA name such as Europe/Berlin)")
                continue
            sched = self.schedule(where, spec.get("weekly"), spec.get("timezone"), spec.get("except"))
            if sched is not None:
                out[str(name)] = ServiceTime(str(name), sched)
        return out

    def parse_maintenance(self, raw: object, components: dict[str, Component],
                          services: dict[Any, Any]) -> tuple[MaintenanceWindow, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem("top level: field 'maintenance'", "must be a list of maintenance windows")
            return ()
        out: list[MaintenanceWindow] = []
        names: set[str] = set()
        for i, spec in enumerate(raw):
            label = spec.get("name") if isinstance(spec, dict) else None
            where = f"maintenance[{i}]" + (f" {label!r}" if isinstance(label, str) else "")
            if not isinstance(spec, dict):
                self.problem(where, "must be a mapping with name, components/services and "
                                    "weekly or start/end")
                continue
            before = len(self.problems)
            for key in sorted(map(str, set(spec) - _MAINTENANCE_KEYS)):
                self.problem(f"{where}: field {key!r}", "unknown field (expected name, components, "
                                                       "services, weekly, timezone, start, end)")
            if not isinstance(label, str) or not label:
                self.problem(f"{where}: field 'name'", "must be a non-empty string")
            elif label in names:
                self.problem(f"{where}: field 'name'", f"{label!r} is used by another window")
            else:
                names.add(label)
            comps = self.name_list(where, "components", spec.get("components"), components,
                                   "component", " (not listed under components:)")
            svcs = self.name_list(where, "services", spec.get("services"), services, "service")
            if comps is not None and svcs is not None and not comps and not svcs:
                self.problem(f"{where}: field 'components'",
                             "a window must name components, services or both")
            weekly, start, end = spec.get("weekly"), spec.get("start"), spec.get("end")
            sched: WeeklySchedule | None = None
            t0 = t1 = None
            if weekly is not None:
                if start is not None or end is not None:
                    self.problem(f"{where}: field 'weekly'",
                                 "a window is weekly or one-off (start/end), not both")
                sched = self.schedule(where, weekly, spec.get("timezone", "UTC"))
            elif start is None or end is None:
                self.problem(f"{where}: field {'start' if start is None else 'end'!r}",
                             "missing: a window needs weekly, or start and end")
            else:
                if "timezone" in spec:
                    self.problem(f"{where}: field 'timezone'",
                                 "only for weekly windows (start and end carry their offset)")
                for key, val in (("start", start), ("end", end)):
                    try:
                        t = parse_instant(val)
                    except CalendarError as exc:
                        self.problem(f"{where}: field {key!r}", str(exc))
                        continue
                    if key == "start":
                        t0 = t
                    else:
                        t1 = t
                if t0 is not None and t1 is not None and t1 <= t0:
                    self.problem(f"{where}: field 'end'", f"{end!r} is not after start {start!r}")
            if len(self.problems) > before:
                continue
            out.append(MaintenanceWindow(str(label), frozenset(comps or ()), frozenset(svcs or ()),
                                         sched, t0, t1))
        return tuple(out)

    def name_list(self, where: str, key: str, raw: object, known: Mapping[Any, Any],
                  noun: str, hint: str = "") -> list[str] | None:
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            self.problem(f"{where}: field {key!r}", "must be a list of names")
            return None
        bad = [x for x in raw if x not in known]
        for x in bad:
            self.problem(f"{where}: field {key!r}", f"unknown {noun} {x!r}{hint}")
        return None if bad else [sys.intern(x) for x in raw]

    def components(self, raw: object) -> dict[str, Component]:
        if not isinstance(raw, dict) or not raw:
            self.problem("top level: field 'components'", "must be a non-empty mapping of components")
            return {}
        out: dict[str, Component] = {}
        for cid, spec in raw.items():
            # Interned, as the decoder interns ids on the wire (``_native.columns``): then
            # the one string object of an id is the key of every dict it is looked up in.
            cid = sys.intern(str(cid))
            where = f"component {cid!r}"
            if COMPONENT_ID.fullmatch(cid) is None:
                self.problem(where, "id must be 1-200 characters of A-Za-z0-9._:/@-")
                continue
            spec = {} if spec is None else spec
            if not isinstance(spec, dict):
                self.problem(where, "must be a mapping like {team: servers, kpi: 0.99}")
                continue
            for key in sorted(map(str, set(spec) - _COMPONENT_KEYS)):
                self.problem(f"{where}: field {key!r}", "unknown field (expected team, kpi)")
            team = spec.get("team")
            if team is not None and not isinstance(team, str):
                self.problem(f"{where}: field 'team'", "must be a string")
                team = None
            kpi = spec.get("kpi")
            if kpi is not None and not _ratio(kpi, upper_inclusive=True):
                self.problem(f"{where}: field 'kpi'", f"{kpi!r} must be a number in (0, 1]")
                kpi = None
            out[cid] = Component(cid, team, None if kpi is None else float(kpi))
        return out

    def service(
        self, name: str, spec: object, components: dict[str, Component], all_services: dict[Any, Any]
    ) -> Service | None:
        where = f"service {name!r}"
        if not isinstance(spec, dict):
            self.problem(where, "must be a mapping with kind, sla and requires")
            return None
        before = len(self.problems)
        for key in sorted(map(str, set(spec) - _SERVICE_KEYS)):
            self.problem(f"{where}: field {key!r}",
                         "unknown field (expected kind, customers, sla, restore_time, requires)")
        kind = spec.get("kind")
        if kind not in KINDS:
            self.problem(f"{where}: field 'kind'", f"{kind!r} must be internal or external")
        customers = spec.get("customers", [])
        if not isinstance(customers, list) or not all(isinstance(c, str) for c in customers):
            self.problem(f"{where}: field 'customers'", "must be a list of strings")
            customers = []
        target, period = self.sla(where, spec.get("sla"))
        restore: float | None = None
        if spec.get("restore_time") is not None:
            try:
                restore = parse_duration(spec["restore_time"])
            except ValueError as exc:
                self.problem(f"{where}: field 'restore_time'", str(exc))
        requires = spec.get("requires")
        if not isinstance(requires, list) or not requires:
            self.problem(f"{where}: field 'requires'", "must be a non-empty list of requirements")
            top: AllOf | None = None
        else:
            items = [
                self.requirement(_Field(where, f"requires[{i}]"), item, components, all_services)
                for i, item in enumerate(requires)
            ]
            top = AllOf(tuple(i for i in items if i is not None))
        if len(self.problems) > before or top is None or target is None or period is None:
            return None
        st_name = spec["sla"].get("service_time")
        return Service(name, str(kind), tuple(customers), target, period, restore, top,
                       st_name if isinstance(st_name, str) else None)

    def sla(self, where: str, raw: object) -> tuple[float | None, Period | None]:
        if not isinstance(raw, dict):
            self.problem(f"{where}: field 'sla'", "must be a mapping {target: 0.999, period: 30d}")
            return None, None
        for key in sorted(map(str, set(raw) - {"target", "period", "service_time"})):
            self.problem(f"{where}: field 'sla.{key}'",
                         "unknown field (expected target, period, service_time)")
        st_name = raw.get("service_time")
        tz: str | None = None
        if st_name is not None:
            st = self.service_times.get(st_name) if isinstance(st_name, str) else None
            if st is None:
                self.problem(f"{where}: field 'sla.service_time'",
                             f"unknown service time {st_name!r} (not listed under service_times:)")
            else:
                tz = st.zone
        target = raw.get("target")
        if not _ratio(target, upper_inclusive=False):
            self.problem(f"{where}: field 'sla.target'", f"{target!r} must be a number in (0, 1)")
            target = None
        period_raw = raw.get("period")
        period: Period | None
        if period_raw == "month":
            period = Period(None, calendar_month=True, timezone=tz)
        else:
            try:
                period = Period(parse_duration(period_raw))
            except ValueError as exc:
                self.problem(f"{where}: field 'sla.period'", f"{exc} or `month`")
                period = None
        return (None if target is None else float(target)), period

    def requirement(
        self, where: _Field, raw: object, components: dict[str, Component], services: dict[Any, Any]
    ) -> Requirement | None:
        if isinstance(raw, str):
            if raw not in components:
                self.problem(str(where), f"unknown component {raw!r} (not listed under components:)")
                return None
            return Leaf(sys.intern(raw))
        if not isinstance(raw, dict) or not raw:
            self.problem(str(where), "must be a component id or one of {any: [...]}, {all: [...]}, "
                                "{at_least: k, of: [...]}, {service: name}")
            return None
        keys = set(raw)
        if keys == {"service"}:
            target = raw["service"]
            if not isinstance(target, str) or target not in services:
                self.problem(str(where + ".service"), f"unknown service {target!r}")
                return None
            return ServiceRef(target)
        if keys in ({"any"}, {"all"}):
            (key,) = keys
            items = self.items(where + f".{key}", raw[key], components, services)
            if items is None:
                return None
            return AnyOf(items) if key == "any" else AllOf(items)
        if keys == {"at_least", "of"}:
            k = raw["at_least"]
            items = self.items(where + ".of", raw["of"], components, services)
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                self.problem(str(where + ".at_least"), f"{k!r} must be a whole number >= 1")
                return None
            if items is None:
                return None
            if k > len(items):
                self.problem(str(where + ".at_least"), f"{k} is larger than its list of {len(items)}")
                return None
            return AtLeast(k, items)
        self.problem(str(where), f"unknown requirement keys {sorted(map(str, keys))} (expected any, all, "
                            "at_least+of, or service)")
        return None

    def items(
        self, where: _Field, raw: object, components: dict[str, Component], services: dict[Any, Any]
    ) -> tuple[Requirement, ...] | None:
        if not isinstance(raw, list) or not raw:
            self.problem(str(where), "must be a non-empty list")
            return None
        parsed = [self.requirement(where + f"[{i}]", item, components, services)
                  for i, item in enumerate(raw)]
        if any(p is None for p in parsed):
            return None
        return tuple(p for p in parsed if p is not None)

    def check_cycles(self, services: dict[str, Service]) -> None:
        deps = {name: _service_refs(svc.requires) for name, svc in services.items()}
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done

        def visit(name: str, path: list[str]) -> None:
            state[name] = 1
            for dep in sorted(deps[name]):
                if state.get(dep) == 1:
                    cycle = [*path[path.index(dep):], dep] if dep in path else [name, dep]
                    self.problem(f"service {name!r}: field 'requires'",
                                 "cycle of services: " + " -> ".join(cycle))
                elif dep not in state:
                    visit(dep, [*path, dep])
            state[name] = 2

        for name in sorted(services):
            if name not in state:
                visit(name, [name])


@dataclass(frozen=True, slots=True)
class _Field:
    """Where a problem is: ``service 'email': field 'requires[3].of[1]'``."""

    owner: str
    path: str

    def __add__(self, suffix: str) -> _Field:
        return _Field(self.owner, self.path + suffix)

    def __str__(self) -> str:
        return f"{self.owner}: field {self.path!r}"


def _service_refs(req: Requirement) -> set[str]:
    if isinstance(req, ServiceRef):
        return {req.service}
    if isinstance(req, Leaf):
        return set()
    out: set[str] = set()
    for item in req.items:
        out |= _service_refs(item)
    return out


def _ratio(value: object, *, upper_inclusive: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return 0.0 < value < 1.0 or (upper_inclusive and value == 1.0)
