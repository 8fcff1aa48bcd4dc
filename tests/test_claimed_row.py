"""``claims.ClaimedRow``: the claim's select list, field for field, on both databases."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from newsletter.delivery import claims, senders, sending

from .sendtools import make_project, pg_database, seed


def select_list(sql: str) -> list[str]:
    """The column names a claim statement hands back, in order (SELECT or RETURNING)."""
    if sql.lstrip().startswith("WITH"):  # the main statement, after the last CTE
        sql = sql[sql.rindex(")") + 1:]
    returning = re.search(r".*\bRETURNING\s+(.*?)\s*$", sql, re.S)  # the statement's
    columns = returning.group(1) if returning else re.search(
        r"^\s*SELECT\s+(.*?)\s+FROM\b", sql, re.S).group(1)
    return [column.strip().split(".")[-1] for column in columns.split(",")]


@pytest.mark.parametrize("dialect", sorted(claims._PICK))
def test_the_row_type_is_the_claims_select_list(dialect: str) -> None:
    # PostgreSQL's one-statement claim hands back the new batch's id after the row
    extra = ["id"] if dialect.startswith("postgresql") else []
    assert select_list(claims._PICK[dialect]) == list(claims.ClaimedRow._fields) + extra


def test_the_parser_sees_a_reordered_list() -> None:
    assert select_list("SELECT email, subscriber_id FROM t") == ["email", "subscriber_id"]
    assert select_list("UPDATE t SET a = 1 RETURNING r.seq, r.name") == ["seq", "name"]
    assert select_list("WITH b AS (INSERT INTO b VALUES (1) RETURNING id) "
                       "UPDATE t SET a = 1 RETURNING r.seq, r.name") == ["seq", "name"]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
def test_a_claim_hands_back_named_rows_with_the_right_values(tmp_path: Path, database) -> None:
    with pg_database() if database == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 3)
        try:
            prepared = sending.preflight(settings, settings.project_dir / "issues/2026-11-24.md")
            send = sending.start(engine, settings, prepared, "daily", backend="outbox").send
            worker = senders.register_worker(engine, send.id)
            _, rows = claims.claim_batch(engine, send, worker, 10)
        finally:
            engine.dispose()
    assert all(type(row) is claims.ClaimedRow for row in rows)
    assert [(r.subscriber_id, r.email, r.name, r.seq) for r in rows] == [
        (n, f"r{n}@example.com", f"Reader {n}", n) for n in (1, 2, 3)]
