"""The in-memory table every repository is built on: records by key, secondary indexes,
and the keys changed since the last commit (what a row-writing backend writes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Generic, TypeVar

from codexrelay.relay.storage.records import Record

R = TypeVar("R", bound=Record)
T = TypeVar("T", bound=Record)


class UnsavedChangeError(RuntimeError):
    """A record changed in place without ``save()``: a row backend would lose that change."""


class Table(Generic[R]):
    """Records by primary key with secondary indexes, and the keys changed since a commit."""

    def __init__(
        self, key: Callable[[R], str], indexes: Mapping[str, Callable[[R], str]] | None = None
    ) -> None:
        self._key = key
        self._rows: dict[str, R] = {}
        self._index_of = dict(indexes or {})
        self._index: dict[str, dict[str, dict[str, R]]] = {name: {} for name in self._index_of}
        # Keys in the order they were first changed (a dict as an ordered set), so a row
        # backend inserts new rows in insertion order.
        self.changed: dict[str, None] = {}
        self.removed: set[str] = set()

    def key(self, record: R) -> str:
        """The primary key of ``record``."""
        return self._key(record)

    def get(self, key: str) -> R | None:
        """The record with this primary key."""
        return self._rows.get(key)

    def add(self, record: R) -> None:
        """Insert or replace a record."""
        key = self._key(record)
        old = self._rows.get(key)
        if old is not None:
            self._unindex(key, old)
        self._rows[key] = record
        for name, field_of in self._index_of.items():
            self._index[name].setdefault(field_of(record), {})[key] = record
        self.changed[key] = None
        self.removed.discard(key)

    def save(self, record: R) -> None:
        """Mark a stored record as changed."""
        key = self._key(record)
        if key not in self._rows:
            msg = f"save() of a record that was never added: {type(record).__name__} {key}"
            raise LookupError(msg)
        if self._rows[key] is not record:
            self.add(record)
        self.changed[key] = None

    def remove(self, record: R) -> None:
        """Delete a record if it is there."""
        key = self._key(record)
        old = self._rows.pop(key, None)
        if old is None:
            return
        self._unindex(key, old)
        self.changed.pop(key, None)
        self.removed.add(key)

    def _unindex(self, key: str, record: R) -> None:
        for name, field_of in self._index_of.items():
            bucket = self._index[name].get(field_of(record))
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._index[name][field_of(record)]

    def where(self, index: str, value: str) -> list[R]:
        """Records whose indexed field equals ``value``, in insertion order."""
        return list(self._index[index].get(value, {}).values())

    def first(self, index: str, value: str) -> R | None:
        """One record whose indexed field (a unique one) equals ``value``."""
        return next(iter(self._index[index].get(value, {}).values()), None)

    def all(self) -> list[R]:
        """Every record, in insertion order."""
        return list(self._rows.values())

    def count(self) -> int:
        """How many records there are."""
        return len(self._rows)

    def items(self) -> Iterator[tuple[str, R]]:
        """(key, record) pairs."""
        return iter(list(self._rows.items()))

    def drain(self) -> tuple[list[str], set[str]]:
        """The keys changed (in first-change order) and removed since the last drain,
        forgetting them."""
        changed, removed = list(self.changed), self.removed
        self.changed, self.removed = {}, set()
        return changed, removed


def oldest_first(records: list[T], created: Callable[[T], datetime]) -> list[T]:
    return sorted(records, key=created)
