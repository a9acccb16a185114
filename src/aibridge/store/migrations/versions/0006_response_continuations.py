"""turns: a joined Responses answer's shown id → the upstream response to continue from

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('aibridge_response_continuations',
    sa.Column('shown_id', sa.String(length=256), nullable=False),
    sa.Column('upstream_id', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('shown_id')
    )
    op.create_index('idx_aibridge_response_continuations_created', 'aibridge_response_continuations',
                    ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('idx_aibridge_response_continuations_created', table_name='aibridge_response_continuations')
    op.drop_table('aibridge_response_continuations')
