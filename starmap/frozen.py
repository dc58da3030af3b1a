"""Immutable values made at what a plain slotted class or a tuple costs."""

from __future__ import annotations

from typing import Final, TypeVar, dataclass_transform

import attrs

__all__ = ("immutable", "new_tuple")

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def immutable(cls: type[_T]) -> type[_T]:
    """An attrs class the type checker holds frozen (mypy refuses an assignment to a field),
    made as a plain slotted one: a frozen attrs ``__init__`` sets each field through
    ``object.__setattr__`` (a star's twelve: ~9,000 instructions more, callgrind; a stored
    row's two: ~900 ns against ~290, timeit). For what is made in bulk: a star per like and
    per row at start-up, a stored row per row read. Hashed by value, as a frozen one is."""
    return attrs.define(slots=True, unsafe_hash=True)(cls)


# A NamedTuple made from all its fields at once, as ``new_tuple(Event, (...))``: its own
# ``__new__`` is a Python function (~1,700 instructions more a tuple, callgrind), and an event,
# a rate verdict and a rate decision are made per like. Named here once; calling
# ``tuple.__new__`` in place costs ~900 instructions more than this module-level name.
new_tuple: Final = tuple.__new__
