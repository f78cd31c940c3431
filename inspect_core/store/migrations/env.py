"""Alembic environment for the results store; run through ``inspect_core.store.engine.migrate``."""

from alembic import context
from sqlmodel import SQLModel

import inspect_core.store.schema  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run store migrations through inspect_core.store.engine.migrate(engine)")
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
