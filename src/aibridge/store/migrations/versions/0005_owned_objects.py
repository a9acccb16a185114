"""owned objects: who made each response and conversation relayed by the bridge (issue 20, 1.2)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('aibridge_owned_objects',
    sa.Column('id', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('provider_name', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('idx_aibridge_owned_objects_created', 'aibridge_owned_objects', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('idx_aibridge_owned_objects_created', table_name='aibridge_owned_objects')
    op.drop_table('aibridge_owned_objects')
