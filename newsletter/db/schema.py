"""Schema versions: Alembic migrations shipped inside the package.

The Alembic configuration is built in code (no alembic.ini), so it works from an
installed wheel. ``ensure_schema`` runs on every open: an empty database is created
at the newest version (first use); a database at an older version is refused with
the command that migrates it; one made by a newer version of newsletter is refused too.

Every command opens the database, so the usual case costs one query and no Alembic:
the revisions stored in ``alembic_version`` are compared with ``HEADS``, the newest
revisions shipped (a constant; tests/test_schema_check.py fails when a migration is
added and it is not updated). Only a database that differs (empty, old, newer) loads
Alembic and its migration scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from ..errors import NewsletterError, SchemaError
from .engine import READ_ONLY

if TYPE_CHECKING:
    from alembic.config import Config

SHIPPED_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATIONS = SHIPPED_MIGRATIONS  # where Alembic looks (a test may point it elsewhere)
UPGRADE_HINT = "run `newsletter db upgrade`"
#: The newest revisions in SHIPPED_MIGRATIONS/versions (the heads Alembic finds there).
HEADS: tuple[str, ...] = ("0021_batch_outcomes",)


@dataclass(frozen=True)
class SchemaState:
    current: tuple[str, ...]  # revisions stamped in the database (empty: no schema yet)
    heads: tuple[str, ...]  # the newest revisions shipped with this package
    known: bool  # every current revision is one this package knows

    @property
    def up_to_date(self) -> bool:
        return set(self.current) == set(self.heads)

    @property
    def empty(self) -> bool:
        return not self.current


def alembic_config(engine: Engine, script_location: Path | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS))
    config.set_main_option("path_separator", "os")
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["engine"] = engine
    return config


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def schema_state(engine: Engine, script_location: Path | None = None) -> SchemaState:
    """The stored and shipped revisions, read through Alembic (loads every migration)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine, script_location))
    heads = tuple(sorted(script.get_heads()))
    try:
        with engine.connect() as connection:
            connection.execution_options(**{READ_ONLY: True})
            current = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    except (OperationalError, ProgrammingError) as exc:
        raise NewsletterError(
            f"database {_describe(engine)}: cannot be read ({_first_line(exc)})"
        ) from None
    shipped = {revision.revision for revision in script.walk_revisions()}
    return SchemaState(current=current, heads=heads, known=set(current) <= shipped)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _has_tables(engine: Engine) -> bool:
    names = set(sa.inspect(engine).get_table_names())
    return bool(names - {"alembic_version"})


def upgrade(engine: Engine, script_location: Path | None = None) -> tuple[SchemaState, SchemaState]:
    """Migrate to the newest schema; returns the states before and after."""
    before = schema_state(engine, script_location)
    if not before.known:
        raise SchemaError(_newer_message(engine, before))
    if before.empty and _has_tables(engine):
        raise SchemaError(
            f"database {_describe(engine)} has tables but no newsletter schema version: "
            "it is not a newsletter database; point database_url at an empty or newsletter "
            "database"
        )
    if not before.up_to_date:
        from alembic import command

        command.upgrade(alembic_config(engine, script_location), "heads")
    return before, schema_state(engine, script_location)


def _newer_message(engine: Engine, state: SchemaState) -> str:
    return (
        f"database {_describe(engine)} has schema version {', '.join(state.current)}, which "
        "this version of newsletter does not know: it was made by a newer newsletter; "
        "upgrade the newsletter package"
    )


def ensure_schema(
    engine: Engine, *, create: bool = True, script_location: Path | None = None
) -> SchemaState:
    """Check the schema before use; create it in an empty database when ``create``."""
    state = current_state(engine, script_location)
    if state.up_to_date:
        return state
    if not state.known:
        raise SchemaError(_newer_message(engine, state))
    if state.empty:
        if not create:
            raise SchemaError(f"database {_describe(engine)} has no schema yet: {UPGRADE_HINT}")
        return upgrade(engine, script_location)[1]
    raise SchemaError(
        f"database {_describe(engine)} has an old schema (version "
        f"{', '.join(state.current)}; this newsletter needs {', '.join(state.heads)}): "
        f"{UPGRADE_HINT}"
    )


def current_state(engine: Engine, script_location: Path | None = None) -> SchemaState:
    """``schema_state``, by one query and without Alembic when the database is current."""
    if script_location is None and MIGRATIONS == SHIPPED_MIGRATIONS:  # what HEADS describes
        stored = _stored_revisions(engine)
        if stored is not None and set(stored) == set(HEADS):
            return SchemaState(current=stored, heads=tuple(sorted(HEADS)), known=True)
    return schema_state(engine, script_location)


def _stored_revisions(engine: Engine) -> tuple[str, ...] | None:
    """The revisions stamped in the database, by one query; None if it cannot be read
    (no version table yet, no server: ``schema_state`` then says what is wrong)."""
    try:
        with engine.connect() as connection:
            connection.execution_options(**{READ_ONLY: True})
            result = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return tuple(sorted(str(row[0]) for row in result))
    except (OperationalError, ProgrammingError):
        return None
