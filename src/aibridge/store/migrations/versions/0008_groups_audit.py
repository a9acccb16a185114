"""groups and their members (subjects of budgets and model rules; synced from OIDC); the audit log

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('aibridge_groups',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), server_default='', nullable=False),
    sa.Column('source', sa.String(length=16), server_default='manual', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('aibridge_group_members',
    sa.Column('group_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['aibridge_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'user_id')
    )
    op.create_index(op.f('ix_aibridge_group_members_user_id'), 'aibridge_group_members', ['user_id'], unique=False)
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
    op.create_table('aibridge_audit_logs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('request_id', sa.String(length=64), server_default='', nullable=False),
    sa.Column('ip', sa.String(length=64), server_default='', nullable=False),
    sa.Column('user_agent', sa.String(length=512), server_default='', nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('username', sa.String(length=64), server_default='', nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.String(length=64), server_default='', nullable=False),
    sa.Column('resource_target', sa.String(length=256), server_default='', nullable=False),
    sa.Column('diff', json, server_default=sa.text("'{}'"), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('additional_fields', json, server_default=sa.text("'{}'"), nullable=False),
    sa.Column('description', sa.String(length=512), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('idx_aibridge_audit_logs_time', 'aibridge_audit_logs', ['time'], unique=False)


def downgrade() -> None:
    op.drop_index('idx_aibridge_audit_logs_time', table_name='aibridge_audit_logs')
    op.drop_table('aibridge_audit_logs')
    op.drop_index(op.f('ix_aibridge_group_members_user_id'), table_name='aibridge_group_members')
    op.drop_table('aibridge_group_members')
    op.drop_table('aibridge_groups')
