"""replicas: which server process runs an interception, to close those a crash left open

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('aibridge_replicas',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('hostname', sa.String(length=256), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aibridge_interceptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replica_id', sa.Uuid(), nullable=True))
        batch_op.create_index('idx_aibridge_interceptions_open', ['replica_id'], unique=False,
                              sqlite_where=sa.text('ended_at IS NULL'), postgresql_where=sa.text('ended_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('aibridge_interceptions', schema=None) as batch_op:
        batch_op.drop_index('idx_aibridge_interceptions_open')
        batch_op.drop_column('replica_id')
    op.drop_table('aibridge_replicas')
