"""fan-outs: a PLANNING state while the plan is recorded in parts

A large fan-out records its first copies and sends them before recording the rest. Until the last
part is recorded the fan-out is PLANNING, so that a run which stopped in between (a crash) is
finished by the redelivery, which plans the followers that have no row yet.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The name 0002 gave it, after the metadata's naming convention (op.f: use as it is).
NAME = "ck_fanouts_ck_fanouts_state"


def _state_check(states: str) -> None:
    op.drop_constraint(op.f(NAME), "fanouts", type_="check", schema="replicator")
    op.create_check_constraint(op.f(NAME), "fanouts", f"state IN ({states})", schema="replicator")


def upgrade() -> None:
    _state_check("'PLANNING', 'RUNNING', 'DONE'")


def downgrade() -> None:
    # A fan-out stopped part-way through its plan would lose its unplanned followers: finish it first.
    op.execute("UPDATE replicator.fanouts SET state = 'RUNNING' WHERE state = 'PLANNING'")
    _state_check("'RUNNING', 'DONE'")
