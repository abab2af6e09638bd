"""offset commit order: a transaction's pending offsets replace only older committed ones (3.19)

Revision ID: c0007
Revises: c0006
Create Date: 2026-11-27 06:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'c0007'
down_revision = 'c0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    log = op.create_table('consumer_offsets_log',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('log_end_offset', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consumer_offsets_log'))
    )
    # Offsets committed before this version all count as position 0, older than any new one.
    op.bulk_insert(log, [{'id': 1, 'log_end_offset': 1}])
    with op.batch_alter_table('committed_offset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('log_offset', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('transaction_offset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('log_offset', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('transaction_offset', schema=None) as batch_op:
        batch_op.drop_column('log_offset')
    with op.batch_alter_table('committed_offset', schema=None) as batch_op:
        batch_op.drop_column('log_offset')
    op.drop_table('consumer_offsets_log')
