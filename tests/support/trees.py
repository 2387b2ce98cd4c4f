"""Hypothesis strategy for requirement trees over a few components (and one service)."""

from __future__ import annotations

from hypothesis import strategies as st

from streams.requirements import AllOf, AnyOf, AtLeast, Leaf, Requirement, ServiceRef
from streams.states import DOWN, MAINTENANCE, UP

#: The components the trees name, and the states they take.
COMPS = ("a", "b", "c", "d", "e")
STATES = (UP, MAINTENANCE, DOWN)


def trees(service: str = "base") -> st.SearchStrategy[Requirement]:
    """Nested all / any / k-of-n over ``COMPS``, with ``{service: service}`` as a leaf."""
    leaf: st.SearchStrategy[Requirement] = st.sampled_from(COMPS).map(Leaf)
    leaf = leaf | st.just(ServiceRef(service))

    def extend(children: st.SearchStrategy[Requirement]) -> st.SearchStrategy[Requirement]:
        items = st.lists(children, min_size=1, max_size=4).map(tuple)
        return (
            items.map(AllOf)
            | items.map(AnyOf)
            | items.flatmap(lambda xs: st.integers(1, len(xs)).map(lambda k: AtLeast(k, xs)))
        )

    return st.recursive(leaf, extend, max_leaves=10)
