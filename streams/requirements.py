"""Requirement trees: what a service needs from its components (CONTRACT §2, §3).

A tree is evaluated on every change of a component it depends on, twice (maintenance
as up, then as down), so each service's tree is compiled once (``compile_indexed``) into
plain Python functions over a list of component states: one for the service state, one
for the blamed components. Supported availability is rarer and walks the tree directly;
``evaluate`` and ``blame`` are the interpreted twins.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from streams.states import DOWN, UP, State


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


def indexed_slots(req: Requirement, resolve: Resolver) -> tuple[str, ...]:
    """The slot order of :func:`compile_indexed` without compiling: components in order of
    first appearance, depth first (iterative, so any depth)."""
    seen: dict[str, int] = {}
    stack: list[Iterator[Requirement]] = [iter((req,))]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif isinstance(node, Leaf):
            seen.setdefault(node.component, len(seen))
        elif isinstance(node, ServiceRef):
            stack.append(iter((resolve(node.service),)))
        else:
            stack.append(iter(node.items))
    return tuple(seen)


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


# -- bitmask evaluation (the trackers' batch path) -------------------------------------------

#: ``(down, bad) -> int(State)``: ``down`` has bit i set when component i is DOWN, ``bad``
#: when it is not UP (DOWN or MAINTENANCE).
MaskStateFn = Callable[[int, int], int]
#: ``down -> mask of the blamed components`` (a subset of ``down``).
MaskBlamer = Callable[[int], int]

_MASKED: dict[str, tuple[MaskStateFn, MaskBlamer]] = {}
#: ``compile_masks`` and ``mask_program`` by ``mask_shape``: services of one shape over
#: other components (most of a big catalog) skip generating the source again (~0.15 ms
#: a service, 15% of a 200k-event storm's first touch of 4,000 services).
_MASKED_BY_SHAPE: dict[Hashable, tuple[MaskStateFn, MaskBlamer]] = {}
_PROGRAM_BY_SHAPE: dict[Hashable, tuple[ProgramNode, ...]] = {}


def mask_shape(req: Requirement, resolve: Resolver, names: tuple[str, ...]) -> Hashable:
    """Everything ``compile_masks`` and ``mask_program`` read of ``req``: the tree with
    ``service:`` references resolved, each leaf as its bit (its index in ``names``),
    each list as its kind, ``k`` and items in order. Two requirements of one shape get
    the same generated code and program, whatever their components are called."""
    index = {c: i for i, c in enumerate(names)}

    def shape(node: Requirement) -> Hashable:
        while isinstance(node, ServiceRef):
            node = resolve(node.service)
        if isinstance(node, Leaf):
            return index[node.component]
        k = node.k if isinstance(node, AtLeast) else -1
        return (type(node).__name__, k, tuple([shape(i) for i in node.items]))

    return shape(req)


@dataclass(slots=True)
class _Walk:
    node: Leaf | AllOf | AnyOf | AtLeast
    var: str
    kids: list[_Walk]


def compile_masks(
    req: Requirement, resolve: Resolver, names: tuple[str, ...], shape: Hashable = None
) -> tuple[MaskStateFn, MaskBlamer]:
    """The service state and the blamed components as functions of bitmasks, component
    ``names[i]`` being bit i.

    Same logic as :func:`evaluate` and :func:`blame`: a leaf holds when its bit is clear
    in ``down`` (maintenance taken as up) or in ``bad`` (maintenance taken as down). The
    leaves of one any/all/at_least list are tested together with one mask (``at_least``
    counts them with ``int.bit_count``), so the cost is per list, not per component.
    Blame descends into failing requirements only; the failing leaves of a list are
    exactly its down ones, ``down & <its mask>``.
    """
    key = mask_shape(req, resolve, names) if shape is None else shape
    hit = _MASKED_BY_SHAPE.get(key)
    if hit is not None:
        return hit
    index = {c: i for i, c in enumerate(names)}

    def split(node: AllOf | AnyOf | AtLeast) -> tuple[int, int, list[Requirement]]:
        """(mask of the leaf items, how many, the other items); leaves listed twice
        count twice, so then every item stays separate."""
        leaf_bits = [1 << index[i.component] for i in node.items if isinstance(i, Leaf)]
        if len(set(leaf_bits)) != len(leaf_bits):
            return 0, 0, list(node.items)
        group = 0
        for b in leaf_bits:
            group |= b
        return group, len(leaf_bits), [i for i in node.items if not isinstance(i, Leaf)]

    def combine(node: AllOf | AnyOf | AtLeast, var: str, others: list[str]) -> str:
        group, n, _ = split(node)
        if isinstance(node, AllOf):
            parts = ([f"not ({var} & {group})"] if group else []) + others
            return " and ".join(parts) or "True"
        if isinstance(node, AnyOf):
            parts = ([f"({var} & {group}) != {group}"] if group else []) + others
            return " or ".join(parts) or "False"
        count = ([f"{n} - ({var} & {group}).bit_count()"] if group else []) + others
        return f"({' + '.join(count) or '0'}) >= {node.k}"

    def source(node: Requirement, var: str) -> str:
        if isinstance(node, Leaf):
            return f"not ({var} & {1 << index[node.component]})"
        if isinstance(node, ServiceRef):
            return source(resolve(node.service), var)
        return combine(node, var, [f"({source(i, var)})" for i in split(node)[2]])

    lines: list[str] = []
    body: list[str] = []
    counter = [0]
    post: list[str] = []

    # number() gives every node a variable, children first (post-order) ...
    def number(node: Requirement) -> str:
        while isinstance(node, ServiceRef):
            node = resolve(node.service)
        if isinstance(node, Leaf):
            counter[0] += 1
            name = f"n{counter[0]}"
            lines.append(f"    {name} = not (d & {1 << index[node.component]})")
        else:
            kids = [number(i) for i in split(node)[2]]
            counter[0] += 1
            name = f"n{counter[0]}"
            lines.append(f"    {name} = {combine(node, 'd', kids)}")
        post.append(name)
        return name

    number(req)
    # ... and the blame walk visits them parents first: the same traversal again, taking
    # the names in the order number() gave them.
    post_names = iter(post)

    def walk(node: Requirement) -> _Walk:
        while isinstance(node, ServiceRef):
            node = resolve(node.service)
        kids = [] if isinstance(node, Leaf) else [walk(i) for i in split(node)[2]]
        return _Walk(node, next(post_names), kids)

    def emit(entry: _Walk, indent: str) -> None:
        node = entry.node
        body.append(f"{indent}if not {entry.var}:")
        if isinstance(node, Leaf):
            body.append(f"{indent}    out |= {1 << index[node.component]}")
            return
        group = split(node)[0]
        body.append(f"{indent}    out |= d & {group}" if group else f"{indent}    pass")
        for kid in entry.kids:
            emit(kid, indent + "    ")

    emit(walk(req), "    ")

    down, maint, up = int(DOWN), int(State.MAINTENANCE), int(UP)
    src = "\n".join([
        f"state = lambda d, m: {down} if not ({source(req, 'd')}) else "
        f"({maint} if not ({source(req, 'm')}) else {up})",
        "def blame(d):",
        *lines,
        "    out = 0",
        *body,
        "    return out",
    ])
    cached = _MASKED.get(src)
    if cached is None:
        namespace: dict[str, object] = {"__builtins__": {}}
        exec(compile(src, "<requires-masks>", "exec"), namespace)
        fresh: tuple[MaskStateFn, MaskBlamer] = (namespace["state"], namespace["blame"])  # type: ignore[assignment]
        if len(_MASKED) < _INDEXED_LIMIT:
            _MASKED[src] = fresh
        cached = fresh
    pair = cached
    if len(_MASKED_BY_SHAPE) < _INDEXED_LIMIT:
        _MASKED_BY_SHAPE[key] = pair
    return pair


def masks_via_list(
    state_ix: IndexedStateFn, blame_ix: IndexedBlamer, slots: tuple[str, ...], names: tuple[str, ...]
) -> tuple[MaskStateFn, MaskBlamer]:
    """Mask-based functions over the list-based ones (the interpreted fallbacks)."""
    down, maint, up = int(DOWN), int(State.MAINTENANCE), int(UP)
    bit_of = [1 << names.index(c) for c in slots]
    bit_by_name = dict(zip(slots, bit_of, strict=True))

    def state(d: int, m: int) -> int:
        return state_ix([down if d & b else (maint if m & b else up) for b in bit_of])

    def blame_fn(d: int) -> int:
        out = 0
        for c in blame_ix([down if d & b else up for b in bit_of], slots):
            out |= bit_by_name[c]
        return out

    return state, blame_fn


#: A node of :func:`mask_program`: ``(kind, leaf mask, leaf count, k, child nodes)``.
ProgramNode = tuple[int, int, int, int, tuple[int, ...]]
ALL, ANY, AT_LEAST = 0, 1, 2


def mask_program(req: Requirement, resolve: Resolver, names: tuple[str, ...],
                 shape: Hashable = None) -> list[ProgramNode]:
    """:func:`compile_masks`' state function as data, for the C loop (``_native.c``).

    Nodes in post-order (children before parents, the root last). A node holds for a
    mask of failing components when: ``all``, none of its leaves fail and every child
    holds; ``any``, some leaf does not fail or some child holds; ``at_least``, the
    leaves that do not fail plus the children that hold are at least ``k``. A lone
    leaf is an ``all`` of one. The leaves of a list are one mask, as in
    ``compile_masks``, unless a leaf is listed twice (then each counts on its own).
    """
    key = mask_shape(req, resolve, names) if shape is None else shape
    hit = _PROGRAM_BY_SHAPE.get(key)
    if hit is not None:
        return list(hit)
    index = {c: i for i, c in enumerate(names)}
    nodes: list[ProgramNode] = []

    def emit(node: Requirement) -> int:
        while isinstance(node, ServiceRef):
            node = resolve(node.service)
        if isinstance(node, Leaf):
            nodes.append((ALL, 1 << index[node.component], 1, 0, ()))
            return len(nodes) - 1
        leaf_bits = [1 << index[i.component] for i in node.items if isinstance(i, Leaf)]
        rest: list[Requirement]
        if len(set(leaf_bits)) == len(leaf_bits):
            group = sum(leaf_bits)
            rest = [i for i in node.items if not isinstance(i, Leaf)]
        else:
            group, leaf_bits, rest = 0, [], list(node.items)
        kids = tuple(emit(i) for i in rest)
        kind = ALL if isinstance(node, AllOf) else ANY if isinstance(node, AnyOf) else AT_LEAST
        k = node.k if isinstance(node, AtLeast) else 0
        nodes.append((kind, group, len(leaf_bits), k, kids))
        return len(nodes) - 1

    emit(req)
    if len(_PROGRAM_BY_SHAPE) < _INDEXED_LIMIT:
        _PROGRAM_BY_SHAPE[key] = tuple(nodes)
    return nodes
