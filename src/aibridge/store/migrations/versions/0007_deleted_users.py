"""users: deleted as Coder does (a flag and a time; the username unique among living users only)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# SQLite names the 0001 unique constraint nowhere: this names it for the table rebuild.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _unique_name() -> str:
    return "uq_users_username" if op.get_bind().dialect.name == "sqlite" else "users_username_key"


def upgrade() -> None:
    with op.batch_alter_table('users', naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(_unique_name(), type_='unique')
        batch_op.add_column(sa.Column('deleted', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('idx_users_username_active', 'users', ['username'], unique=True,
                    sqlite_where=sa.text('deleted = 0'), postgresql_where=sa.text('deleted = false'))


def downgrade() -> None:
    op.drop_index('idx_users_username_active', table_name='users')
    with op.batch_alter_table('users', naming_convention=NAMING) as batch_op:
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('deleted')
        batch_op.create_unique_constraint(_unique_name(), ['username'])
