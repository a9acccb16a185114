"""governance: interception cost and requested model; prices, budgets, budget usage, model rules

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('aibridge_interceptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_model', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('cost_usd', sa.Float(), nullable=True))
    op.create_table('aibridge_prices',
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('input', sa.Float(), nullable=False),
    sa.Column('output', sa.Float(), nullable=False),
    sa.Column('cache_read', sa.Float(), nullable=False),
    sa.Column('cache_write', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model')
    )
    op.create_table('aibridge_budgets',
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('limit_usd', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'subject')
    )
    op.create_table('aibridge_budget_usage',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('spent_micros', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reserved_micros', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('notified', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'period', 'period_start')
    )
    op.create_table('aibridge_model_allow',
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('patterns', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'subject')
    )
    op.create_table('aibridge_model_aliases',
    sa.Column('from_model', sa.String(length=256), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('to_model', sa.String(length=256), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('from_model', 'provider')
    )


def downgrade() -> None:
    op.drop_table('aibridge_model_aliases')
    op.drop_table('aibridge_model_allow')
    op.drop_table('aibridge_budget_usage')
    op.drop_table('aibridge_budgets')
    op.drop_table('aibridge_prices')
    with op.batch_alter_table('aibridge_interceptions', schema=None) as batch_op:
        batch_op.drop_column('cost_usd')
        batch_op.drop_column('requested_model')
