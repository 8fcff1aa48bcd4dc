"""A public app with a seeded list for the provider webhook tests, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.audience import suppressions
from newsletter.audience.subscribers import get_subscriber
from newsletter.config import Settings
from newsletter.web import create_app

from .sendtools import make_project, pg_database, seed

with warnings.catch_warnings():  # Starlette's TestClient: "httpx is deprecated, use httpx2"
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient


@dataclass
class Site:
    settings: Settings
    engine: sa.Engine
    client: TestClient

    def status(self, email: str) -> str:
        return get_subscriber(self.engine, email).status

    def suppressed(self, email: str) -> tuple[str, str] | None:
        found = suppressions.is_suppressed(self.engine, email)
        return None if found is None else (found.reason, found.source)


@contextlib.contextmanager
def site_for(tmp_path: Path, database: str, **overrides) -> Iterator[Site]:
    with pg_database() if database == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url).model_copy(update=overrides)
        engine = seed(settings, 5)
        app = create_app(settings, preview=False, public=True)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Site(settings, engine, client)
        engine.dispose()


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
