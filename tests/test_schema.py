"""The tables (newsletter/db/tables.py) and the migrations describe the same schema.

A fresh SQLite and a fresh PostgreSQL database are migrated to the newest revision and
compared with the one metadata: alembic's autogenerate comparison (tables, columns,
types, server defaults, indexes, unique and foreign keys), then what it leaves out
(CHECK constraints' names and allowed values, partial indexes' predicates). Objects the
migrations create with raw SQL, which no metadata can hold, are named in ``RAW_SQL`` with
the reason; anything else in the database that the tables do not declare is a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from newsletter.db.engine import make_engine
from newsletter.db.schema import alembic_config, schema_state
from newsletter.db.tables import metadata

from .sendtools import pg_database

_SKIPS = "migration 0004: skips a subscriber's pending recipients when they may no longer " \
    "receive (a trigger, so every writer is covered; see newsletter/audience/receiving.py)"
_SUPPRESSED = "migration 0009: a new suppression skips the address's pending recipients"
#: (kind, name) -> why the migrations create it with raw SQL instead of the tables
RAW_SQL: dict[tuple[str, str], str] = {
    ("trigger", "tr_subscribers_unsendable"): _SKIPS,
    ("trigger", "tr_memberships_unsendable"): _SKIPS,
    ("trigger", "tr_memberships_removed"): _SKIPS,
    # PostgreSQL runs a trigger's body as a function of its own
    ("function", "nl_subscriber_unsendable"): _SKIPS,
    ("function", "nl_membership_unsendable"): _SKIPS,
    ("function", "nl_membership_removed"): _SKIPS,
    # migration 0009: a pause skips the subscriber's pending recipients the same way
    ("trigger", "tr_subscribers_paused"): _SKIPS,
    ("function", "nl_subscriber_paused"): _SKIPS,
    ("trigger", "tr_suppressions_skip"): _SUPPRESSED,
    ("function", "nl_suppression_skip"): _SUPPRESSED,
}
_RAW_ON = {"sqlite": ("trigger",), "postgresql": ("trigger", "function")}


def _include_name(name: str | None, type_: str, parent: dict) -> bool:
    if type_ == "table":
        return name != "alembic_version"
    return (type_, name) not in RAW_SQL


def differences(conn: sa.Connection, tables: sa.MetaData = metadata) -> list:
    """Everything in which the database's schema and ``tables`` disagree."""
    tables = _as_created_on(tables, conn.dialect)
    context = MigrationContext.configure(conn, opts={
        "include_name": _include_name, "compare_type": True, "compare_server_default": True})
    found: list = list(compare_metadata(context, tables))
    inspector = sa.inspect(conn)
    for table in tables.sorted_tables:
        declared, reflected = _checks_declared(table), _checks_reflected(inspector, table.name)
        if declared != reflected:
            found.append(("check constraints", table.name, declared, reflected))
        declared = _predicates_declared(table, conn.dialect.name)
        reflected = _predicates_reflected(inspector, table.name, conn.dialect.name)
        if declared != reflected:
            found.append(("partial index predicates", table.name, declared, reflected))
    return found


def _values(sql: object) -> frozenset[str]:
    return frozenset(re.findall(r"'([^']*)'", str(sql)))


def _checks_declared(table: sa.Table) -> dict[str, frozenset[str]]:
    return {str(c.name): _values(c.sqltext) for c in table.constraints
            if isinstance(c, sa.CheckConstraint)}


def _checks_reflected(inspector: sa.Inspector, table: str) -> dict[str, frozenset[str]]:
    return {c["name"]: _values(c["sqltext"]) for c in inspector.get_check_constraints(table)}


def _predicate(sql: object) -> str:
    """PostgreSQL's ``((status)::text = 'pending'::text)`` as ``status = 'pending'``."""
    text = re.sub(r"::[a-z_]+( varying)?(\[\])?", "", str(sql)).replace("(", "").replace(")", "")
    return " ".join(text.split()).lower()


def _predicates_declared(table: sa.Table, dialect: str) -> dict[str, str]:
    return {str(i.name): _predicate(i.dialect_options[dialect]["where"]) for i in table.indexes
            if i.dialect_options[dialect]["where"] is not None}


def _predicates_reflected(inspector: sa.Inspector, table: str, dialect: str) -> dict[str, str]:
    return {i["name"]: _predicate(i["dialect_options"][f"{dialect}_where"])
            for i in inspector.get_indexes(table)
            if i.get("dialect_options", {}).get(f"{dialect}_where") is not None}


def raw_objects(conn: sa.Connection) -> set[tuple[str, str]]:
    """Triggers, functions and views: what the metadata cannot describe."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')")
    else:
        rows = conn.exec_driver_sql(
            "SELECT 'trigger', tgname FROM pg_trigger WHERE NOT tgisinternal "
            "UNION ALL SELECT 'function', proname FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace "
            "UNION ALL SELECT 'view', viewname FROM pg_views WHERE schemaname = 'public'")
    return {(kind, name) for kind, name in rows}


def test_migrated_schema_matches_the_tables(store: Engine) -> None:
    assert schema_state(store).up_to_date
    with store.connect() as conn:
        assert differences(conn) == []
        expected = {key for key in RAW_SQL if key[0] in _RAW_ON[conn.dialect.name]}
        assert raw_objects(conn) == expected
        tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
    assert tables == set(metadata.tables)


def _copy(tables: sa.MetaData) -> sa.MetaData:
    copy = sa.MetaData(naming_convention=tables.naming_convention)
    for table in tables.sorted_tables:
        copied = table.to_metadata(copy)
        # to_metadata leaves the constraints' ddl_if behind (SQLAlchemy 2.1): carry it over
        rules = {c.name: c._ddl_if for c in table.constraints if c._ddl_if is not None}
        for constraint in copied.constraints:
            if constraint.name in rules:
                constraint.ddl_if(*rules[constraint.name])
    return copy


def _as_created_on(tables: sa.MetaData, dialect: sa.Dialect) -> sa.MetaData:
    """``tables`` as their DDL makes them on ``dialect``: without the foreign keys that
    their ``ddl_if`` leaves off it (so that one the database has anyway is a difference)."""
    copy = _copy(tables)
    for table in copy.tables.values():
        ddl = str(sa.schema.CreateTable(table).compile(dialect=dialect))
        for key in list(table.foreign_key_constraints):
            if f"CONSTRAINT {key.name} " not in ddl:
                table.constraints.discard(key)
    return copy


def _with(change) -> sa.MetaData:  # noqa: ANN001 - a function changing the copied tables
    copy = _copy(metadata)
    change(copy.tables)
    return copy


def test_the_check_sees_a_table_change_without_a_migration(store: Engine) -> None:
    """A column added, a status allowed, a partial index widened, each without a
    migration: the comparison names it."""
    def add_column(tables) -> None:  # noqa: ANN001
        tables["sends"].append_column(sa.Column("colour", sa.String(20), nullable=True))

    def allow_status(tables) -> None:  # noqa: ANN001
        check = next(c for c in tables["sends"].constraints if c.name == "ck_sends_status")
        check.sqltext = sa.text("status IN ('sending', 'finished', 'cancelled', 'paused')")

    def widen_index(tables) -> None:  # noqa: ANN001
        index = next(i for i in tables["send_recipients"].indexes
                     if i.name == "ix_send_recipients_pending")
        for dialect in ("sqlite", "postgresql"):
            index.dialect_options[dialect]["where"] = sa.text("status IN ('pending', 'sending')")

    def key_everywhere(tables) -> None:  # noqa: ANN001 - the ledger's key without ddl_if
        key = next(iter(tables["send_recipients"].foreign_key_constraints))
        key._ddl_if = None

    with store.connect() as conn:
        keyed = [(d[0], d[1].name) for d in differences(conn, _with(key_everywhere))]
        assert keyed == ([] if conn.dialect.name == "sqlite" else
                         [("add_fk", "fk_send_recipients_send_id_sends")])
        added = differences(conn, _with(add_column))
        assert [(d[0], d[3].name, d[3].table.name) for d in added] == [
            ("add_column", "colour", "sends")]
        assert [d[:2] for d in differences(conn, _with(allow_status))] == [
            ("check constraints", "sends")]
        assert [d[:2] for d in differences(conn, _with(widen_index))] == [
            ("partial index predicates", "send_recipients")]


def test_the_tables_module_alone_holds_every_table() -> None:
    """Nothing else needs importing (in a fresh interpreter): migrations and tests see
    the whole schema, and no module owning the data is imported for it."""
    code = ("import sys; from newsletter.db.tables import metadata; "
            "print(' '.join(sorted(metadata.tables))); "
            "print(' '.join(m for m in sys.modules if m.startswith('newsletter')))")
    tables, modules = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, check=True).stdout.splitlines()
    assert set(tables.split()) == {
        "subscribers", "lists", "memberships", "sends", "send_recipients", "send_batches",
        "send_workers", "schedules", "schedule_workers", "webhook_events", "webhook_requests",
        "send_event_counts", "send_recipient_events", "archive_issues", "signups",
        "rate_limits", "suppressions", "bounce_messages", "soft_bounces", "subject_tests",
        "send_links", "clicks", "opens", "send_rates",
        "send_cursors"}
    owners = {"newsletter.delivery.ledger", "newsletter.scheduler", "newsletter.feedback.effects",
              "newsletter.archive", "newsletter.delivery.sending"}
    assert not owners & set(modules.split())


# -- revision 0018: the ledger's foreign key, PostgreSQL only --------------------------

_KEY = "fk_send_recipients_send_id_sends"


def _ledger_keys(engine: Engine) -> list[tuple[str | None, str, str | None]]:
    return [(k["name"], k["referred_table"], k["options"].get("ondelete"))
            for k in sa.inspect(engine).get_foreign_keys("send_recipients")]


def _ledger_key_dropped_and_restored(engine: Engine) -> None:
    config = alembic_config(engine)
    command.upgrade(config, "0017_claim_cursor")
    _fill(engine)
    keyed = [(_KEY, "sends", "CASCADE")]
    assert _ledger_keys(engine) == keyed
    command.upgrade(config, "heads")
    assert _ledger_keys(engine) == ([] if engine.dialect.name == "postgresql" else keyed)
    command.downgrade(config, "0017_claim_cursor")  # a release rolled back has it again
    assert _ledger_keys(engine) == keyed
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM send_recipients").scalar() == 2


def test_ledger_key_kept_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'keyed.db'}")
    _ledger_key_dropped_and_restored(engine)
    engine.dispose()


def _on_postgresql(check) -> None:  # noqa: ANN001
    """``check(engine)`` on a fresh PostgreSQL database."""
    with pg_database() as url:
        engine = make_engine(url)
        check(engine)
        engine.dispose()


@pytest.mark.postgres
def test_ledger_key_dropped_on_postgresql() -> None:
    _on_postgresql(_ledger_key_dropped_and_restored)


# -- revision 0019: a batch's seqs stored as they are, PostgreSQL only -----------------


def _seqs_storage(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'send_batches'::regclass "
            "AND attname = 'seqs'").scalar_one()


def _seqs_uncompressed_and_back(engine: Engine) -> None:
    config = alembic_config(engine)
    command.upgrade(config, "heads")
    assert _seqs_storage(engine) == "e"  # EXTERNAL: out of line, never compressed
    _fill(engine)
    with engine.begin() as conn:  # a batch of 1,000 seqs is stored and read back whole
        conn.exec_driver_sql(
            "INSERT INTO send_batches (send_id, worker_id, status, size, claimed_at, seqs) "
            f"SELECT 1, 'w', 'sending', 1000, '{_NOW}', array_agg(g) "
            "FROM generate_series(1, 1000) AS g")
        stored = conn.exec_driver_sql("SELECT seqs FROM send_batches WHERE send_id = 1"
                                      ).scalar_one()
    assert stored == list(range(1, 1001))
    command.downgrade(config, "0018_snapshot_without_fk")
    assert _seqs_storage(engine) == "x"  # EXTENDED, PostgreSQL's default, as before


@pytest.mark.postgres
def test_batch_seqs_stored_uncompressed_on_postgresql() -> None:
    _on_postgresql(_seqs_uncompressed_and_back)


# -- revision 0020: the ledger's fillfactor, PostgreSQL only ---------------------------


def _fillfactor(engine: Engine) -> list[str] | None:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT reloptions FROM pg_class "
                                    "WHERE oid = 'send_recipients'::regclass").scalar_one()


def _every_answer_hot(engine: Engine) -> None:
    """At the new fillfactor, answering a page's rows (each row growing by the provider's
    id and the time, as an answer makes it) moves none to another page: every update is
    HOT, the primary key gets no new entry."""
    config = alembic_config(engine)
    command.upgrade(config, "heads")
    assert _fillfactor(engine) == ["fillfactor=35"]
    _fill(engine)
    with engine.begin() as conn:
        run = conn.exec_driver_sql
        run("INSERT INTO send_recipients (send_id, seq, subscriber_id, email, name, status) "
            "SELECT 1, g, NULL, 'reader' || g || '@example.com', 'Reader ' || g, 'pending' "
            "FROM generate_series(3, 2000) AS g")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE send_recipients SET status = 'sent', attempts = attempts + 1, "
            "provider_id = 'kJ2Hx0Lq-RkqMNg3OdGv1w.filterdrecv-7d8f6c5-1-6769A1', "
            f"updated_at = '{_NOW}' WHERE send_id = 1")
        # the statistics of this transaction's own updates (no collector round trip)
        updated, hot = conn.exec_driver_sql(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
            "WHERE relname = 'send_recipients'").one()
    assert (updated, hot) == (2000, 2000)
    command.downgrade(config, "0019_batch_seqs_uncompressed")
    assert _fillfactor(engine) == ["fillfactor=50"]  # revision 0015's, as before


@pytest.mark.postgres
def test_every_answer_is_a_hot_update_on_postgresql() -> None:
    _on_postgresql(_every_answer_hot)


# -- revision 0007: the CHECK constraints' names ---------------------------------------

_OLD = "0006_issue_identity"
_DOUBLED = {"ck_subscribers_ck_subscribers_status", "ck_memberships_ck_memberships_status",
            "ck_sends_ck_sends_kind", "ck_sends_ck_sends_status",
            "ck_schedules_ck_schedules_status"}
_NOW = "2026-11-24 06:00:00"


def _checks(engine: Engine) -> set[str]:
    inspector = sa.inspect(engine)
    return {c["name"] for t in ("subscribers", "memberships", "sends", "schedules")
            for c in inspector.get_check_constraints(t)}


def _fill(engine: Engine) -> None:
    """A list of two, and a real send under way with both pending."""
    with engine.begin() as conn:
        run = conn.exec_driver_sql
        run(f"INSERT INTO lists (id, name, created_at) VALUES (1, 'daily', '{_NOW}')")
        for n in (1, 2):
            run("INSERT INTO subscribers (id, email, email_key, attributes, status, "
                f"status_changed_at, created_at) VALUES ({n}, 'r{n}@news.test', "
                f"'r{n}@news.test', '{{}}', 'active', '{_NOW}', '{_NOW}')")
            run("INSERT INTO memberships (list_id, subscriber_id, status, created_at, "
                f"status_changed_at) VALUES (1, {n}, 'subscribed', '{_NOW}', '{_NOW}')")
        run("INSERT INTO sends (id, kind, issue_path, issue_slug, subject, list_id, list_name, "
            "backend, status, html, text, total, created_at) VALUES (1, 'real', 'i.md', 'i', "
            f"'S', 1, 'daily', 'outbox', 'sending', '', '', 2, '{_NOW}')")
        for n in (1, 2):
            run("INSERT INTO send_recipients (send_id, seq, subscriber_id, email, status) "
                f"VALUES (1, {n}, {n}, 'r{n}@news.test', 'pending')")


def _upgrade_an_old_database(engine: Engine) -> None:
    config = alembic_config(engine)
    command.upgrade(config, _OLD)
    assert _checks(engine) >= _DOUBLED  # what revisions 0001-0003 made
    _fill(engine)
    command.upgrade(config, "heads")
    assert not _DOUBLED & _checks(engine)
    with engine.begin() as conn:
        assert differences(conn) == []
        with (pytest.raises(sa.exc.IntegrityError, match="ck_sends_status"),
              conn.begin_nested()):
            conn.exec_driver_sql("UPDATE sends SET status = 'paused'")
        # the rows are all there, and revision 0004's trigger still skips the unsubscribed
        conn.exec_driver_sql("UPDATE subscribers SET status = 'unsubscribed' WHERE id = 2")
        rows = conn.exec_driver_sql(
            "SELECT seq, status FROM send_recipients ORDER BY seq").all()
    assert [tuple(r) for r in rows] == [(1, "pending"), (2, "skipped")]
    command.downgrade(config, _OLD)  # and back, for a release rolled back
    assert _checks(engine) >= _DOUBLED


def test_upgrade_renames_the_check_constraints_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade_an_old_database(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    engine.dispose()
    reopened = make_engine(f"sqlite:///{tmp_path / 'old.db'}")  # new connections read it
    assert "ck_sends_ck_sends_status" in _checks(reopened)
    reopened.dispose()


@pytest.mark.postgres
def test_upgrade_renames_the_check_constraints_postgresql() -> None:
    _on_postgresql(_upgrade_an_old_database)
