"""One way to map records (dataclasses) to SQLite rows and back.

A `Table` is built from a dataclass: its fields are the columns, in field order (minus the ones
named in `exclude`, which must have defaults), and it writes the statements and converts values
both ways: a StrEnum field is stored as its value and read back as the enum, a bool as 0/1, and an
optional of either (`Status | None`) the same way with NULL for None; anything else is stored as
is (int, str, float, bytes, None).

    @dataclass
    class Attempt:
        attempt_id: int
        payment_hash: str
        status: Status                  # a StrEnum
        done: bool = False
        cache: dict = field(default_factory=dict)  # not a column

    ATTEMPTS = Table(Attempt, "attempts", key=("attempt_id",), mutable=("status", "done"),
                     exclude=("cache",))
    ATTEMPTS.columns   # "attempt_id, payment_hash, status, done"
    ATTEMPTS.select    # "SELECT attempt_id, payment_hash, status, done FROM attempts"
    ATTEMPTS.upsert    # INSERT ... ON CONFLICT(attempt_id) DO UPDATE SET status=..., done=...
    ATTEMPTS.row(a)    # (1, "ab..", "failed", 1): the parameters of insert/upsert/replace
    ATTEMPTS.record(row)  # an Attempt again, from a row read with `select`

`upsert` updates only the `mutable` columns of an existing row: the others are written once and
never replaced. `replace` (INSERT OR REPLACE) rewrites the whole row. The statements are plain
strings, so they can be queued on the journal like any other.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Convert = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _converters(annotation: Any) -> tuple[Convert, Convert]:
    """(to the column, from the column) for a field's resolved type."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return _same, _same
        annotation, optional = rest[0], True
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        enum: type[Enum] = annotation

        def enum_out(value: Any) -> Any:
            return None if value is None else value.value

        def enum_in(value: Any) -> Any:
            return None if value is None else enum(value)

        return enum_out, enum_in
    if annotation is bool:

        def bool_out(value: Any) -> Any:
            return None if value is None else int(value)

        def bool_in(value: Any) -> Any:
            return None if value is None else bool(value)

        return (bool_out, bool_in) if optional else (int, bool)
    return _same, _same


class Table(Generic[T]):
    """How records of the dataclass `cls` map to rows of the table `name`.

    `key`: the columns of the conflict target of `upsert` (a primary key or unique index).
    `mutable`: the columns `upsert` updates on an existing row (default: all but the key).
    `exclude`: fields that are not columns (they must have defaults)."""

    def __init__(
        self,
        cls: type[T],
        name: str,
        *,
        key: Iterable[str],
        mutable: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
    ):
        assert dataclasses.is_dataclass(cls), f"{cls!r} is not a dataclass"
        excluded = set(exclude)
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.name not in excluded]
        for f in dataclasses.fields(cls):
            if f.name in excluded:
                has_default = f.default is not dataclasses.MISSING
                has_default = has_default or f.default_factory is not dataclasses.MISSING
                assert has_default or not f.init, f"excluded field {f.name} needs a default"
        self.cls = cls
        self.name = name
        self.names: tuple[str, ...] = tuple(f.name for f in fields)
        self.key: tuple[str, ...] = tuple(key)
        assert self.key and all(k in self.names for k in self.key), "key must name columns"
        chosen = [n for n in self.names if n not in self.key] if mutable is None else mutable
        self.mutable: tuple[str, ...] = tuple(chosen)
        assert all(m in self.names for m in self.mutable), "mutable must name columns"
        pairs = [_converters(hints[n]) for n in self.names]
        self._out = tuple(p[0] for p in pairs)
        # row(): one attrgetter for all the columns, then only the columns that convert.
        self._get_all = operator.attrgetter(*self.names)
        self._converted = tuple((i, out) for i, out in enumerate(self._out) if out is not _same)
        self._in = tuple(p[1] for p in pairs)
        self.columns = ", ".join(self.names)
        marks = ", ".join("?" * len(self.names))
        self.select = f"SELECT {self.columns} FROM {name}"
        self.insert = f"INSERT INTO {name} ({self.columns}) VALUES ({marks})"
        self.replace = f"INSERT OR REPLACE INTO {name} ({self.columns}) VALUES ({marks})"
        updates = ", ".join(f"{m} = excluded.{m}" for m in self.mutable)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        self.upsert = f"{self.insert} ON CONFLICT({', '.join(self.key)}) {action}"

    def row(self, record: T) -> tuple[Any, ...]:
        """The record's column values, in `columns` order."""
        values = self._get_all(record)
        if len(self.names) == 1:
            values = (values,)  # attrgetter of one name gives the value itself
        if not self._converted:
            return values
        converted = list(values)
        for i, out in self._converted:
            converted[i] = out(converted[i])
        return tuple(converted)

    def record(self, row: Iterable[Any]) -> T:
        """A record from a row read with `select` (the columns in `columns` order)."""
        values = tuple(row)
        assert len(values) == len(self.names), f"{self.name}: a row of {len(values)} columns"
        kwargs = {n: conv(v) for n, conv, v in zip(self.names, self._in, values, strict=True)}
        return self.cls(**kwargs)
