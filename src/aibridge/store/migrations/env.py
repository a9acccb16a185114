"""Alembic environment: always run in-process on a connection handed over by ``store.db``."""

from alembic import context

from aibridge.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
