"""Requirement trees: what a service needs from its components (CONTRACT §2, §3).

A tree is evaluated on every change of a component it depends on, twice (maintenance
as up, then as down), so each service's tree is compiled once (``compile_indexed``) into
plain Python functions over a list of component states: one for the service state, one
for the blamed components. Supported availability is rarer and walks the tree directly;
``evaluate`` and ``blame`` are the interpreted twins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from slawatch.streams.states import DOWN, UP, State


@dataclass(frozen=True, slots=True)
class Leaf:
    component: str


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class AtLeast:
    k: int
    items: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class ServiceRef:
    service: str


Requirement = Leaf | AllOf | AnyOf | AtLeast | ServiceRef

#: Resolves ``service:`` references to the referenced service's top-level requirement.
Resolver = Callable[[str], Requirement]


def leaves(req: Requirement, resolve: Resolver) -> set[str]:
    """Every component the requirement reads, through ``service:`` references too."""
    out: set[str] = set()
    stack: list[Requirement] = [req]
    while stack:
        node = stack.pop()
        if isinstance(node, Leaf):
            out.add(node.component)
        elif isinstance(node, ServiceRef):
            stack.append(resolve(node.service))
        else:
            stack.extend(node.items)
    return out


Blamer = Callable[[Mapping[str, State]], tuple[str, ...]]


StateFn = Callable[[Mapping[str, State]], int]


def evaluate(req: Requirement, states: Mapping[str, State], resolve: Resolver, *, planned: bool) -> bool:
    """Interpreted twin of the compiled evaluators, for blame walks, very deep trees and the tests."""
    if isinstance(req, Leaf):
        st = states.get(req.component, UP)
        return st == UP if planned else st != DOWN
    if isinstance(req, ServiceRef):
        return evaluate(resolve(req.service), states, resolve, planned=planned)
    results = (evaluate(item, states, resolve, planned=planned) for item in req.items)
    if isinstance(req, AllOf):
        return all(results)
    if isinstance(req, AnyOf):
        return any(results)
    return sum(results) >= req.k


def blame(req: Requirement, states: Mapping[str, State], resolve: Resolver) -> tuple[str, ...]:
    """Components blamed for an unplanned failure (CONTRACT §4 "Attribution").

    Descend from the top only into requirements that fail with maintenance taken as
    up; the ``down`` components reached are blamed.
    """
    found: set[str] = set()

    def walk(node: Requirement) -> None:
        if isinstance(node, Leaf):
            if states.get(node.component, UP) == DOWN:
                found.add(node.component)
            return
        if isinstance(node, ServiceRef):
            walk(resolve(node.service))
            return
        for item in node.items:
            if not evaluate(item, states, resolve, planned=False):
                walk(item)

    if not evaluate(req, states, resolve, planned=False):
        walk(req)
    return tuple(sorted(found))


def supported(req: Requirement, kpi: Mapping[str, float], resolve: Resolver) -> float:
    """Availability the requirement gets if every component just meets its KPI.

    Independent failures: product for all, 1 - prod(1 - a) for any, the k-of-n
    Poisson-binomial tail for at_least; components without a KPI count as 1.
    """
    if isinstance(req, Leaf):
        return kpi.get(req.component, 1.0)
    if isinstance(req, ServiceRef):
        return supported(resolve(req.service), kpi, resolve)
    probs = [supported(item, kpi, resolve) for item in req.items]
    if isinstance(req, AllOf):
        return _product(probs)
    if isinstance(req, AnyOf):
        return 1.0 - _product(1.0 - p for p in probs)
    return _at_least(req.k, probs)


def _product(values: Iterable[float]) -> float:
    out = 1.0
    for v in values:
        out *= v
    return out


def _at_least(k: int, probs: list[float]) -> float:
    # dist[j] = probability that exactly j of the items seen so far succeed.
    dist = [1.0]
    for p in probs:
        nxt = [0.0] * (len(dist) + 1)
        for j, q in enumerate(dist):
            nxt[j] += q * (1.0 - p)
            nxt[j + 1] += q * p
        dist = nxt
    return min(1.0, sum(dist[k:]))


# -- indexed evaluation (the trackers' hot path) -------------------------------------------

#: ``states -> int(State)`` over a list of states, one slot per component of the model.
IndexedStateFn = Callable[[list[int]], int]
#: ``(states, names) -> blamed names, sorted``, same list; ``names[i]`` is slot i's id.
IndexedBlamer = Callable[[list[int], tuple[str, ...]], tuple[str, ...]]

_INDEXED: dict[str, tuple[IndexedStateFn, IndexedBlamer]] = {}
_INDEXED_LIMIT = 20_000


def compile_indexed(
    req: Requirement, resolve: Resolver
) -> tuple[tuple[str, ...], IndexedStateFn, IndexedBlamer]:
    """(slot names, state, blame) over a list of states instead of a dict.

    The same logic as :func:`evaluate` and :func:`blame`, compiled: a leaf reads
    ``s[<slot>]`` (a list index with a constant: no hashing, no string compare) and
    slots are numbered in order of first appearance, so services of one shape share
    one compiled pair: a catalog of similar services compiles each shape once.
    """
    slots: dict[str, int] = {}

    def slot(comp: str) -> int:
        i = slots.get(comp)
        if i is None:
            i = slots[comp] = len(slots)
        return i

    def source(node: Requirement, planned: bool) -> str:
        if isinstance(node, Leaf):
            i = slot(node.component)
            return f"s[{i}]=={int(UP)}" if planned else f"s[{i}]!={int(DOWN)}"
        if isinstance(node, ServiceRef):
            return source(resolve(node.service), planned)
        parts = [f"({source(item, planned)})" for item in node.items]
        if isinstance(node, AllOf):
            return " and ".join(parts) or "True"
        if isinstance(node, AnyOf):
            return " or ".join(parts) or "False"
        return f"({' + '.join(parts)}) >= {node.k}"

    unplanned = source(req, False)
    planned = source(req, True)

    lines: list[str] = []
    body: list[str] = []
    names: dict[int, str] = {}
    counter = [0]

    def value(node: Requirement) -> str:
        if isinstance(node, ServiceRef):
            return value(resolve(node.service))
        counter[0] += 1
        name = f"n{counter[0]}"
        if isinstance(node, Leaf):
            lines.append(f"    {name} = s[{slot(node.component)}] != {int(DOWN)}")
        else:
            parts = [value(item) for item in node.items]
            if isinstance(node, AllOf):
                lines.append(f"    {name} = {' and '.join(parts) or 'True'}")
            elif isinstance(node, AnyOf):
                lines.append(f"    {name} = {' or '.join(parts) or 'False'}")
            else:
                lines.append(f"    {name} = ({' + '.join(parts)}) >= {node.k}")
        names[id(node)] = name
        return name

    def descend(node: Requirement, indent: str) -> None:
        if isinstance(node, ServiceRef):
            descend(resolve(node.service), indent)
            return
        body.append(f"{indent}if not {names[id(node)]}:")
        if isinstance(node, Leaf):
            body.append(f"{indent}    out.add(n[{slot(node.component)}])")
            return
        body.append(f"{indent}    pass")
        for item in node.items:
            descend(item, indent + "    ")

    value(req)
    descend(req, "    ")
    down, maint, up = int(DOWN), int(State.MAINTENANCE), int(UP)
    src = "\n".join([
        f"state = lambda s: {down} if not ({unplanned}) else ({maint} if not ({planned}) else {up})",
        "def blame(s, n):",
        *lines,
        "    out = set()",
        *body,
        "    return tuple(sorted(out))",
    ])
    cached = _INDEXED.get(src)
    if cached is not None:
        return tuple(slots), cached[0], cached[1]
    namespace: dict[str, object] = {"__builtins__": {"set": set, "tuple": tuple, "sorted": sorted}}
    exec(compile(src, "<requires>", "exec"), namespace)
    state_fn: IndexedStateFn = namespace["state"]  # type: ignore[assignment]
    blame_fn: IndexedBlamer = namespace["blame"]  # type: ignore[assignment]
    if len(_INDEXED) < _INDEXED_LIMIT:
        _INDEXED[src] = (state_fn, blame_fn)
    return tuple(slots), state_fn, blame_fn
