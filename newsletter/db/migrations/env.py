"""Alembic environment, configured in code by newsletter.db.schema.alembic_config.

The engine comes from ``config.attributes["engine"]`` when newsletter runs the
migrations, or from ``sqlalchemy.url`` when a developer runs alembic directly.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from newsletter.db.tables import metadata

config = context.config


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from newsletter.db.engine import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if isinstance(connection, sa.Connection) and connection.in_transaction():
            connection.commit()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations()
