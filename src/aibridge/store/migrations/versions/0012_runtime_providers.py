"""providers managed at runtime: created through the API, their keys encrypted at rest

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
    op.create_table('aibridge_providers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('display_name', sa.String(length=128), server_default='', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('base_url', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('settings', json, server_default=sa.text("'{}'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('aibridge_provider_keys',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('masked', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['aibridge_providers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_aibridge_provider_keys_provider_id'), 'aibridge_provider_keys', ['provider_id'],
                    unique=False)
    generations = sa.table('aibridge_generations', sa.column('kind', sa.String), sa.column('generation', sa.BigInteger))
    op.bulk_insert(generations, [{'kind': 'providers', 'generation': 0}])


def downgrade() -> None:
    op.execute("DELETE FROM aibridge_generations WHERE kind = 'providers'")
    op.drop_index(op.f('ix_aibridge_provider_keys_provider_id'), table_name='aibridge_provider_keys')
    op.drop_table('aibridge_provider_keys')
    op.drop_table('aibridge_providers')
