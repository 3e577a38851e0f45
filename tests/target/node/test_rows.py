"""target/common/rows.py: records to rows and back, and an upsert that leaves the columns a
record was created with alone."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum

import pytest

from target.common.rows import Table


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Thing:
    thing_id: int
    name: str
    colour: Colour
    shiny: bool
    maybe: Colour | None = None
    flag: bool | None = None
    note: str | None = None
    scratch: list[int] = field(default_factory=list)


THINGS = Table(
    Thing, "things", key=("thing_id",), mutable=("colour", "shiny"), exclude=("scratch",)
)


def test_round_trip_with_converters_and_an_upsert_that_keeps_the_rest() -> None:
    assert THINGS.columns == "thing_id, name, colour, shiny, maybe, flag, note"
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE things (thing_id INTEGER PRIMARY KEY, name TEXT, colour TEXT,"
        " shiny INTEGER, maybe TEXT, flag INTEGER, note TEXT)"
    )
    thing = Thing(1, "a", Colour.RED, True, Colour.BLUE, False, None, scratch=[1])
    assert THINGS.row(thing) == (1, "a", "red", 1, "blue", 0, None)
    db.execute(THINGS.upsert, THINGS.row(thing))
    changed = Thing(1, "renamed", Colour.BLUE, False, None, True, "x")
    db.execute(THINGS.upsert, THINGS.row(changed))
    back = THINGS.record(db.execute(THINGS.select).fetchone())
    # Only the mutable columns changed; the excluded field took its default.
    assert back == Thing(1, "a", Colour.BLUE, False, Colour.BLUE, False, None)
    assert isinstance(back.colour, Colour) and back.shiny is False and back.scratch == []
    db.execute(THINGS.replace, THINGS.row(changed))
    assert THINGS.record(db.execute(THINGS.select).fetchone()) == changed
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(THINGS.insert, THINGS.row(changed))


def test_a_table_refuses_what_it_cannot_map() -> None:
    with pytest.raises(AssertionError):
        Table(Thing, "things", key=("nope",))
    with pytest.raises(AssertionError):
        Table(Thing, "things", key=("thing_id",), exclude=("name",))  # no default
    with pytest.raises(AssertionError):
        THINGS.record((1, "a"))
    assert "DO UPDATE SET name = excluded.name" in Table(Thing, "t", key=("thing_id",)).upsert
