"""single sign-on: users' login type and identity provider subject

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('login_type', sa.String(length=16), server_default='token', nullable=False))
        batch.add_column(sa.Column('oidc_subject', sa.String(length=255), nullable=True))
    op.create_index('idx_users_oidc_subject', 'users', ['oidc_subject'], unique=True)


def downgrade() -> None:
    op.drop_index('idx_users_oidc_subject', table_name='users')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('oidc_subject')
        batch.drop_column('login_type')
