"""The database: engine, tables, schema migrations (Alembic), transactions, failures."""
