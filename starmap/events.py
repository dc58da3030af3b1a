"""The publisher interface actors hand their events to, and the in-process hub.

Every mutation becomes one ``Event`` ``{"topic", "type", "data"}`` with an id from
one sequence shared by all topics. The hub keeps the most recent ones in a ring
buffer (for replay); live streams subscribe to it.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any, Final, Protocol

import attrs

__all__ = ("Event", "Hub", "Publisher")

DEFAULT_BUFFER: Final = 10_000


@attrs.frozen
class Event:
    id: str
    topic: str
    type: str
    data: dict[str, Any]

    def envelope(self) -> dict[str, Any]:
        return {"topic": self.topic, "type": self.type, "data": self.data}


class Publisher(Protocol):
    """Where actors send what changed; they never know who listens."""

    def publish(self, topic: str, type_: str, data: dict[str, Any]) -> Event:
        """Record and fan out one event; the event with its id."""


class Hub:
    """The in-process broadcast hub: ids, the replay buffer."""

    def __init__(self, *, buffer_size: int = DEFAULT_BUFFER) -> None:
        self._ids = itertools.count(1)
        self.recent: collections.deque[Event] = collections.deque(maxlen=buffer_size)

    def publish(self, topic: str, type_: str, data: dict[str, Any]) -> Event:
        event = Event(str(next(self._ids)), topic, type_, data)
        self.recent.append(event)
        return event
