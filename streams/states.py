"""Component and service states.

States are small ints ordered by severity so that ties between events with the same
timestamp resolve the same way whatever the arrival order: the most severe wins.
"""

from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    UP = 0
    MAINTENANCE = 1
    DOWN = 2

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {State.UP: "up", State.MAINTENANCE: "maintenance", State.DOWN: "down"}

#: Parsing table for the wire format, which is case-insensitive.
BY_NAME: dict[str, State] = {v: k for k, v in _LABELS.items()}

UP, MAINTENANCE, DOWN = State.UP, State.MAINTENANCE, State.DOWN
