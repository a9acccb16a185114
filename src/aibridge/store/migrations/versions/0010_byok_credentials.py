"""byok: whose credential each interception went upstream with (credential_kind, credential_hint)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('aibridge_interceptions') as batch:
        batch.add_column(sa.Column('credential_kind', sa.String(length=16), nullable=False,
                                   server_default='centralized'))
        batch.add_column(sa.Column('credential_hint', sa.String(length=64), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('aibridge_interceptions') as batch:
        batch.drop_column('credential_hint')
        batch.drop_column('credential_kind')
