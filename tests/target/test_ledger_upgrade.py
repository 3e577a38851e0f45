"""A wallet database of the earlier version opens in this one: the payouts' outbox state had a
table of its own and the reconciler found changed payouts by their rowid (each write replaced
the row). On load both become columns of the payout (`outbox`, `changed_seq`), in one
transaction, and a payout left pending across the upgrade still resolves from its outbox state."""

from __future__ import annotations

import sqlite3

from target_harness import (
    assert_clean,
    in_process,
    late_settling_config,
    leave_a_payout_pending,
    run,
)

AMOUNT_MSAT = 100_000
FUNDS_MSAT = 10_000_000


def to_earlier_version(db: object) -> None:
    """The file as the earlier version left it: an `outbox` table, no `outbox`/`changed_seq`
    columns."""
    with sqlite3.connect(db) as conn:  # type: ignore[arg-type]
        conn.execute(
            "CREATE TABLE outbox (payout_id TEXT PRIMARY KEY, state TEXT NOT NULL,"
            " updated_ms INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO outbox SELECT payout_id, outbox, updated_ms FROM payouts"
            " WHERE outbox IS NOT NULL"
        )
        conn.execute("DROP INDEX payouts_changed")
        conn.execute("ALTER TABLE payouts DROP COLUMN outbox")
        conn.execute("ALTER TABLE payouts DROP COLUMN changed_seq")


def test_an_earlier_database_is_upgraded_and_its_pending_payout_resolves(tmp_path):
    async def scenario() -> None:
        db = tmp_path / "w.sqlite"
        wallet, invoice, _ = await leave_a_payout_pending(db, AMOUNT_MSAT, FUNDS_MSAT)
        to_earlier_version(db)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT state FROM outbox").fetchall() == [("sent",)]
        async with in_process(late_settling_config(db)) as api:
            assert api.state is not None
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 1, "failed": 0, "pending": 0}, rec
            assert_clean(rec)
            truth = await api.node_payment(invoice["payment_hash"])
            view = await api.wallet(wallet)
            assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - truth["fee_msat"]
        with sqlite3.connect(db) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            assert "outbox" not in tables, tables
            assert {"payouts_changed", "payouts_status"} <= tables, tables
            ((outbox, changed_seq, rowid),) = conn.execute(
                "SELECT outbox, changed_seq, rowid FROM payouts"
            ).fetchall()
            # settled after the upgrade: its last write numbered after the rowid it was given
            assert outbox == "done" and changed_seq > rowid, (outbox, changed_seq, rowid)

    run(scenario())
