"""Alembic environment: runs on the connection that gateway.db.upgrade_database hands it."""

from alembic import context
from sqlmodel import SQLModel

import gateway.models  # noqa: F401  (registers the gateway's tables)
import tokens.models  # noqa: F401  (registers the registry's tables)

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `pushgate db upgrade`, not the alembic CLI")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
