"""generations: a change counter per kind of cached state (auth, governance), bumped with each change

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('aibridge_generations',
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False, server_default='0'),
    sa.PrimaryKeyConstraint('kind')
    )
    op.bulk_insert(table, [{'kind': 'auth', 'generation': 0}, {'kind': 'governance', 'generation': 0}])


def downgrade() -> None:
    op.drop_table('aibridge_generations')
