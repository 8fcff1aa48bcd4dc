"""The subscriber store on SQLite and PostgreSQL: schema, subscribers, lists, statuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from newsletter.audience.emails import InvalidEmail, _fast, normalize_email
from newsletter.audience.lists import ListNotFound, create_list, delete_list, get_list, list_lists
from newsletter.audience.subscribers import (
    SubscriberNotFound,
    add_subscriber,
    count_by_status,
    count_subscribers,
    get_subscriber,
    iter_subscribers,
    list_subscribers,
    remove_subscriber,
    sendable_batch,
    set_status,
    subscriber_lists,
    unsubscribe,
)
from newsletter.db import schema as schema_module
from newsletter.db.connect import open_store
from newsletter.db.engine import make_engine
from newsletter.db.schema import SchemaError, ensure_schema, schema_state, upgrade
from newsletter.errors import UsageError


def test_first_use_creates_the_schema(store: Engine) -> None:
    state = schema_state(store)
    assert state.up_to_date and state.current == state.heads
    # tests/test_schema.py compares it with the tables, column by column
    assert set(sa.inspect(store).get_table_names()) >= {"subscribers", "lists", "memberships"}


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'n.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


def _script_with_next_revision(tmp_path: Path) -> Path:
    """A copy of the shipped migrations plus one newer revision (as a later release has)."""
    folder = tmp_path / "migrations"
    shutil.copytree(schema_module.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = schema_module.alembic_config(make_engine("sqlite://"), folder)
    heads = tuple(ScriptDirectory.from_config(config).get_heads())  # one, or several branches
    (folder / "versions" / "9999_next.py").write_text(
        f'"""A later release."""\nimport sqlalchemy as sa\nfrom alembic import op\n'
        f'revision = "9999_next"\ndown_revision = {heads!r}\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n"
        '    op.add_column("lists", sa.Column("colour", sa.String(20), nullable=True))\n\n\n'
        "def downgrade():\n"
        '    op.drop_column("lists", "colour")\n',
        encoding="utf-8",
    )
    return folder


def test_old_schema_is_refused_with_the_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_store(url)
    create_list(engine, "daily")
    newer = _script_with_next_revision(tmp_path)
    with pytest.raises(SchemaError, match=r"old schema .*run `newsletter db upgrade`"):
        ensure_schema(engine, script_location=newer)
    before, after = upgrade(engine, script_location=newer)
    assert after.current == ("9999_next",) and before.current != after.current
    assert ensure_schema(engine, script_location=newer).up_to_date
    assert [m.name for m in list_lists(engine)] == ["daily"]  # nothing lost
    # The shipped code now finds a schema it does not know: made by a newer release.
    with pytest.raises(SchemaError, match="newer newsletter"):
        ensure_schema(engine)
    engine.dispose()


def test_not_a_newsletter_database_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with pytest.raises(SchemaError, match="not a newsletter database"):
        ensure_schema(engine)
    engine.dispose()


def test_unsupported_or_missing_database_is_a_config_error(tmp_path: Path) -> None:
    from newsletter.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported database"):
        make_engine("mysql://x@localhost/db")
    with pytest.raises(ConfigError, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'missing' / 'n.db'}")


def test_addresses_are_normalised_and_unique_in_any_case(store: Engine) -> None:
    first = add_subscriber(store, "  Ann.Lee@Example.ORG ", name="Ann")
    assert first.created and first.subscriber.email == "Ann.Lee@example.org"
    again = add_subscriber(store, "ann.lee@EXAMPLE.org", name="Someone else")
    assert not again.created and again.subscriber.id == first.subscriber.id
    assert again.subscriber.name == "Ann"  # an existing subscriber keeps its data
    assert get_subscriber(store, "ANN.LEE@example.org").id == first.subscriber.id
    assert get_subscriber(store, first.subscriber.id).email == "Ann.Lee@example.org"
    assert count_subscribers(store) == 1
    idn = add_subscriber(store, "x@XN--BCHER-KVA.ch")
    assert idn.subscriber.email == "x@bücher.ch"
    with pytest.raises(UsageError, match="not a valid email address"):
        add_subscriber(store, "not-an-address")
    with pytest.raises(UsageError, match="subscriber field"):
        add_subscriber(store, "b@example.org", attributes={"status": "x"})
    with pytest.raises(SubscriberNotFound):
        get_subscriber(store, "nobody@example.org")


def test_lists_create_count_delete(store: Engine) -> None:
    create_list(store, "daily", "The daily briefing")
    create_list(store, "weekly")
    with pytest.raises(UsageError, match="already exists"):
        create_list(store, "daily")
    with pytest.raises(ListNotFound, match=r"lists: daily, weekly.*lists create nope"):
        get_list(store, "nope")
    for n in range(3):
        add_subscriber(store, f"s{n}@example.org", lists=["daily", "weekly"])
    unsubscribe(store, "s0@example.org", list_name="daily")
    set_status(store, "s1@example.org", "bounced", "hard bounce")
    counts = {m.name: (m.active, m.inactive) for m in list_lists(store)}
    assert counts == {"daily": (1, 2), "weekly": (2, 1)}
    assert delete_list(store, "daily") == 3
    assert [m.name for m in list_lists(store)] == ["weekly"]
    assert count_subscribers(store) == 3  # subscribers stay
    assert [
        m.list_name for m in subscriber_lists(store, get_subscriber(store, "s0@example.org").id)
    ] == ["weekly"]


def test_unsubscribe_globally_and_per_list_with_filters(store: Engine) -> None:
    create_list(store, "daily")
    create_list(store, "weekly")
    for n in range(5):
        add_subscriber(store, f"s{n}@example.org", lists=["daily", "weekly"])
    assert unsubscribe(store, "s0@example.org", reason="asked by email")
    assert not unsubscribe(store, "s0@example.org")  # already
    assert unsubscribe(store, "s1@example.org", list_name="daily")
    assert not unsubscribe(store, "s1@example.org", list_name="daily")
    set_status(store, "s2@example.org", "complained", "spam report")
    s0 = get_subscriber(store, "s0@example.org")
    assert (s0.status, s0.status_reason) == ("unsubscribed", "asked by email")
    assert count_by_status(store) == {"active": 3, "unsubscribed": 1, "bounced": 0, "complained": 1}
    assert count_by_status(store, list_name="daily") == {
        "active": 2,
        "unsubscribed": 2,
        "bounced": 0,
        "complained": 1,
    }
    active_daily = list_subscribers(store, list_name="daily", status="active")
    assert [s.email for s in active_daily] == ["s3@example.org", "s4@example.org"]
    unsub_daily = list_subscribers(store, list_name="daily", status="unsubscribed")
    assert [s.email for s in unsub_daily] == ["s0@example.org", "s1@example.org"]
    assert count_subscribers(store, list_name="weekly", status="active") == 3
    # A per-list unsubscribe of someone not on the list is recorded anyway.
    add_subscriber(store, "new@example.org")
    assert unsubscribe(store, "new@example.org", list_name="weekly")
    assert add_subscriber(store, "new@example.org", lists=["weekly"]).not_resubscribed == ["weekly"]


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_add_never_reactivates_without_resubscribe(store: Engine, status: str) -> None:
    create_list(store, "daily")
    add_subscriber(store, "gone@example.org", lists=["daily"])
    set_status(store, "gone@example.org", status, "test")
    result = add_subscriber(store, "gone@example.org", lists=["daily"])
    assert result.subscriber.status == status and not result.resubscribed
    assert get_subscriber(store, "gone@example.org").status == status
    assert sendable_batch(store, get_list(store, "daily").id) == []
    back = add_subscriber(store, "gone@example.org", lists=["daily"], resubscribe=True)
    assert back.resubscribed and back.subscriber.status == "active"
    assert [s.email for s in sendable_batch(store, get_list(store, "daily").id)] == [
        "gone@example.org"
    ]


def test_remove_deletes_memberships(store: Engine) -> None:
    create_list(store, "daily")
    add_subscriber(store, "a@example.org", lists=["daily"])
    add_subscriber(store, "b@example.org", lists=["daily"])
    removed = remove_subscriber(store, "A@example.org")
    assert removed.email == "a@example.org"
    assert count_subscribers(store, list_name="daily") == 1
    with pytest.raises(SubscriberNotFound):
        remove_subscriber(store, "a@example.org")
    # ids are never reused: a re-added address is a new subscriber
    again = add_subscriber(store, "a@example.org")
    assert again.created and again.subscriber.id > removed.id


def test_iterate_in_batches_and_delivery_queries(store: Engine) -> None:
    daily = create_list(store, "daily")
    for n in range(10):
        add_subscriber(store, f"s{n:02d}@example.org", lists=["daily"])
    add_subscriber(store, "other@example.org")  # not on the list
    assert [s.email for s in iter_subscribers(store, batch_size=3)][:3] == [
        "s00@example.org",
        "s01@example.org",
        "s02@example.org",
    ]
    assert len(list(iter_subscribers(store, batch_size=3))) == 11
    assert len(list(iter_subscribers(store, list_name="daily", batch_size=4))) == 10
    unsubscribe(store, "s03@example.org", list_name="daily")
    set_status(store, "s05@example.org", "bounced")
    first = sendable_batch(store, daily.id, limit=4)
    assert [s.email for s in first] == [f"s{n:02d}@example.org" for n in (0, 1, 2, 4)]
    rest = sendable_batch(store, daily.id, after_id=first[-1].id, limit=100)
    assert [s.email for s in rest] == [f"s{n:02d}@example.org" for n in (6, 7, 8, 9)]
    unsubscribe(store, "s01@example.org")
    again = sendable_batch(store, daily.id, limit=4)
    assert [s.email for s in again] == [f"s{n:02d}@example.org" for n in (0, 2, 4, 6)]


# -- email normalisation: the fast path gives email-validator's answers --------------

ATEXT = "abcXYZ0189!#$%&'*+/=?^_`{|}~-"
local_parts = st.text(alphabet=ATEXT + ".é", min_size=1, max_size=70)
labels = st.text(alphabet="abcdeXYZ019-", min_size=1, max_size=65)
tlds = st.sampled_from(["com", "ORG", "co", "test", "local", "localhost", "invalid", "x1", "c"])


@settings(max_examples=600, deadline=None)
@given(local_parts, st.lists(labels, min_size=1, max_size=3), tlds)
def test_fast_path_agrees_with_email_validator(local: str, domain: list[str], tld: str) -> None:
    address = f"{local}@{'.'.join([*domain, tld])}"
    fast = _fast(address)
    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    if fast is not None:
        assert fast == expected
    if expected is None:
        with pytest.raises(InvalidEmail):
            normalize_email(address)
    else:
        assert normalize_email(address) == (expected, expected.lower())


def test_fast_path_takes_plain_addresses_and_case_insensitive_mailboxes() -> None:
    assert _fast("John.Smith+news@Mail.Example.COM") == "John.Smith+news@mail.example.com"
    assert _fast("Postmaster@example.org") == "postmaster@example.org"
    assert _fast("a@b.test") is None and _fast("é@example.org") is None


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """During a long write (an import's chunk), counts and look-ups still answer at once."""
    import time

    engine = open_store(f"sqlite:///{tmp_path / 'n.db'}")
    add_subscriber(engine, "a@example.org")
    with engine.begin() as writer:  # holds the write lock (BEGIN IMMEDIATE)
        add_subscriber(writer, "b@example.org")
        started = time.monotonic()
        assert count_subscribers(engine) == 1  # the committed snapshot
        assert get_subscriber(engine, "a@example.org").email == "a@example.org"
        assert time.monotonic() - started < 2  # not the 30 s busy timeout
    assert count_subscribers(engine) == 2
    engine.dispose()
