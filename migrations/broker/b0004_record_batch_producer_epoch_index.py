"""record_batch: index producer batches by producer id, epoch and offset

A transaction's marker is looked up by (producer id, epoch) at every commit and abort, and
an idempotent producer's last five batches by (producer id, epoch): with the epoch in the
index both read only that epoch's batches instead of every batch the producer ever wrote.

Revision ID: b0004
Revises: b0003
Create Date: 2026-11-27 08:30:00
"""
from alembic import op


revision = 'b0004'
down_revision = 'b0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_record_batch_producer', table_name='record_batch')
    op.create_index('ix_record_batch_producer', 'record_batch', ['log_id', 'producer_id', 'producer_epoch', 'base_offset'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_record_batch_producer', table_name='record_batch')
    op.create_index('ix_record_batch_producer', 'record_batch', ['log_id', 'producer_id', 'base_offset'], unique=False)
