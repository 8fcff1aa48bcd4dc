"""What a failure of the database itself means for the user, in one line.

A full disk, a file that is not a database, a damaged one or one that cannot be written
reaches the command as a driver exception (wrapped by SQLAlchemy, or raw from the
importer's SQLite cursor). ``explain(exc, database)`` turns those into a
``DatabaseFailure`` saying what happened and what to do; anything else gives None. The
database is never changed on the way: a failed statement rolls back its transaction
(SQLite and PostgreSQL both), so what was committed before stays, and an import or a
send run again carries on where it stopped.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import DatabaseFailure

_AGAIN = (
    "the change under way was not saved and nothing saved before it was lost; {fix}, then "
    "run the same command again (an import or a send carries on where it stopped)"
)
# SQLite's primary result codes (https://sqlite.org/rescode.html) a user can act on
_SQLITE = {
    3: "permission denied ({error}); check who owns the database file and its folder",
    8: "cannot write to the database ({error}); check the permissions of the file, its "
    "-wal and -shm files and its folder",
    10: "disk input/output error ({error}); " + _AGAIN.format(fix="check the disk and free space"),
    11: "the database file is damaged ({error}); it was left as it is: restore it from a "
    "backup (`sqlite3 FILE .recover` may save its rows)",
    13: "the disk is full ({error}); " + _AGAIN.format(fix="free some space"),
    14: "cannot open the database file ({error}); check that it is a file you may read and "
    "write, in a folder you may write",
    26: "not an SQLite database ({error}); it was left as it is: restore it from a backup, "
    "or move it away (a new, empty one is created) or change database_url",
}
# PostgreSQL SQLSTATE classes and codes (server out of resources, I/O, damaged data)
_POSTGRES = {
    "53100": "the database server's disk is full ({error}); "
    + _AGAIN.format(fix="free space on the server"),
    "53": "the database server is out of resources ({error}); "
    + _AGAIN.format(fix="ask its operator"),
    "58": "the database server had a system error ({error}); "
    + _AGAIN.format(fix="ask its operator"),
    "XX001": "the database server reports damaged data ({error}); ask its operator",
}


def describe_database(url: str) -> str:
    """The database as a user knows it: the SQLite file's path, else the URL without
    its password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "the database"
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return f"database {parsed.render_as_string(hide_password=True)}"


def explain(exc: BaseException, database: str = "the database") -> DatabaseFailure | None:
    """A one-line ``DatabaseFailure`` for a driver error the user can act on, else None."""
    for error in _chain(exc):
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            template = _SQLITE.get(code & 0xFF) if isinstance(code, int) else None
        else:
            state = getattr(error, "sqlstate", None)
            if not isinstance(state, str) or not _is_psycopg(error):
                continue
            template = _POSTGRES.get(state) or _POSTGRES.get(state[:2])
        if template is not None:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return DatabaseFailure(f"{database}: " + template.format(error=first))
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, SQLAlchemy's ``orig`` and the causes, each once."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop(0)
        if error is None or any(error is s for s in seen) or len(seen) > 20:
            continue
        seen.append(error)
        todo += [getattr(error, "orig", None), error.__cause__, error.__context__]
    return seen


def _is_psycopg(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] == "psycopg"
