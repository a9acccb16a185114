"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), server_default='', nullable=False),
    sa.Column('name', sa.String(length=128), server_default='', nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('suspended', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('aibridge_interceptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('initiator_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('provider_name', sa.String(length=64), nullable=False),
    sa.Column('api', sa.String(length=32), server_default='', nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('client', sa.String(length=64), server_default='', nullable=False),
    sa.Column('client_session_id', sa.String(length=256), nullable=True),
    sa.Column('user_agent', sa.Text(), server_default='', nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['initiator_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aibridge_interceptions', schema=None) as batch_op:
        batch_op.create_index('idx_aibridge_interceptions_started_id', [sa.text('started_at DESC'), sa.text('id DESC')], unique=False)
        batch_op.create_index('idx_aibridge_interceptions_client', ['client'], unique=False)
        batch_op.create_index('idx_aibridge_interceptions_initiator', ['initiator_id', 'started_at'], unique=False)
        batch_op.create_index('idx_aibridge_interceptions_model', ['model'], unique=False)
        batch_op.create_index('idx_aibridge_interceptions_provider', ['provider'], unique=False)
        batch_op.create_index('idx_aibridge_interceptions_session', ['client_session_id'], unique=False)

    op.create_table('api_keys',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('hashed_secret', sa.LargeBinary(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)

    op.create_table('aibridge_model_thoughts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('interception_id', sa.Uuid(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['interception_id'], ['aibridge_interceptions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aibridge_model_thoughts', schema=None) as batch_op:
        batch_op.create_index('idx_aibridge_model_thoughts_interception', ['interception_id'], unique=False)

    op.create_table('aibridge_token_usages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('interception_id', sa.Uuid(), nullable=False),
    sa.Column('provider_response_id', sa.String(length=256), server_default='', nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_read_input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_write_input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['interception_id'], ['aibridge_interceptions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aibridge_token_usages', schema=None) as batch_op:
        batch_op.create_index('idx_aibridge_token_usages_interception', ['interception_id'], unique=False)

    op.create_table('aibridge_tool_usages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('interception_id', sa.Uuid(), nullable=False),
    sa.Column('provider_response_id', sa.String(length=256), server_default='', nullable=False),
    sa.Column('provider_tool_call_id', sa.String(length=256), server_default='', nullable=False),
    sa.Column('server_url', sa.Text(), nullable=True),
    sa.Column('tool', sa.String(length=256), nullable=False),
    sa.Column('input', sa.Text(), nullable=False),
    sa.Column('injected', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('invocation_error', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['interception_id'], ['aibridge_interceptions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aibridge_tool_usages', schema=None) as batch_op:
        batch_op.create_index('idx_aibridge_tool_usages_interception', ['interception_id'], unique=False)

    op.create_table('aibridge_user_prompts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('interception_id', sa.Uuid(), nullable=False),
    sa.Column('provider_response_id', sa.String(length=256), server_default='', nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['interception_id'], ['aibridge_interceptions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aibridge_user_prompts', schema=None) as batch_op:
        batch_op.create_index('idx_aibridge_user_prompts_interception', ['interception_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('aibridge_user_prompts', schema=None) as batch_op:
        batch_op.drop_index('idx_aibridge_user_prompts_interception')

    op.drop_table('aibridge_user_prompts')
    with op.batch_alter_table('aibridge_tool_usages', schema=None) as batch_op:
        batch_op.drop_index('idx_aibridge_tool_usages_interception')

    op.drop_table('aibridge_tool_usages')
    with op.batch_alter_table('aibridge_token_usages', schema=None) as batch_op:
        batch_op.drop_index('idx_aibridge_token_usages_interception')

    op.drop_table('aibridge_token_usages')
    with op.batch_alter_table('aibridge_model_thoughts', schema=None) as batch_op:
        batch_op.drop_index('idx_aibridge_model_thoughts_interception')

    op.drop_table('aibridge_model_thoughts')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_user_id'))

    op.drop_table('api_keys')
    with op.batch_alter_table('aibridge_interceptions', schema=None) as batch_op:
        batch_op.drop_index('idx_aibridge_interceptions_session')
        batch_op.drop_index('idx_aibridge_interceptions_provider')
        batch_op.drop_index('idx_aibridge_interceptions_model')
        batch_op.drop_index('idx_aibridge_interceptions_initiator')
        batch_op.drop_index('idx_aibridge_interceptions_client')

    op.drop_table('aibridge_interceptions')
    op.drop_table('users')
