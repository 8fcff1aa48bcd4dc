"""PostgreSQL ledger: a batch accepted as a whole is recorded on its batch row alone.

Since revision 0017 a batch claimed by the send's cursor leaves its rows pending, and the
answer was the one write of each row: a million row updates (and their WAL) for the
thousand answers of a million-recipient SendGrid send, two fifths of the server's CPU.
Now a cursor batch whose rest was accepted (``sent``) records that on the batch row
(status ``done``, ``provider_id``, ``finished_at``) and its rows stay ``pending``: a
pending row at or behind the cursor and not ``requeued`` is in flight (an open batch) or
sent (``newsletter/delivery/outcomes.py`` holds that rule and every reader uses it).

For the rule to hold, nothing may skip such a row: the skip triggers of revisions 0004,
0010 and 0011 now leave alone the rows the cursor has passed (unless requeued). A row in
flight was skipped before and its batch's answer then overwrote it; now it is left
pending and the answer is its record, the same outcome. Rows ahead of the cursor and
requeued rows are skipped as before. The rule the triggers state is unchanged
(``tests/test_receiving.py``); it is written out again here because a migration is frozen.

Downgrade writes ``sent`` into the rows of every batch recorded so, then restores the
triggers of revisions 0010 and 0011 and drops the column. SQLite only gains the
(unused) column: there every answer is written to its rows.

Revision ID: 0021_batch_outcomes
Revises: 0020_ledger_fillfactor_35
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_batch_outcomes"
down_revision = "0020_ledger_fillfactor_35"
branch_labels = None
depends_on = None

REASON = "unsubscribed, bounced or complained before sending"
KINDS = "'real', 'welcome'"
# rows the cursor has not passed, or made pending again behind it
NOT_CLAIMED = """
      AND (requeued OR seq > COALESCE((SELECT c.claimed_through FROM send_cursors AS c
                                       WHERE c.send_id = send_recipients.send_id), 0))"""

# (PostgreSQL function, reason, rows of the subscriber, condition on the sends)
FUNCTIONS = (
    ("nl_subscriber_unsendable", REASON, "seq = NEW.id", ""),
    ("nl_membership_unsendable", REASON, "seq = NEW.subscriber_id",
     " AND list_id = NEW.list_id"),
    ("nl_membership_removed", REASON, "seq = OLD.subscriber_id",
     " AND list_id = OLD.list_id"),
    ("nl_subscriber_paused", "paused", "seq = NEW.id", ""),
    ("nl_suppression_skip", "suppressed",
     "seq IN (SELECT id FROM subscribers WHERE email_key = NEW.email_key)", ""),
)

MATERIALIZE = """
UPDATE send_recipients AS r
SET status = 'sent', provider_id = b.provider_id, attempts = r.attempts + 1,
    updated_at = b.finished_at
FROM send_batches AS b
WHERE b.send_id = r.send_id AND b.status = 'done' AND b.seqs IS NOT NULL
  AND r.seq BETWEEN b.seqs[1] AND b.seqs[cardinality(b.seqs)]
  AND r.status = 'pending' AND NOT r.requeued"""


def _skip(reason: str, rows: str, sends_where: str, unclaimed: bool) -> str:
    return f"""
    UPDATE send_recipients SET status = 'skipped', updated_at = now(), reason = '{reason}'
    WHERE status = 'pending' AND {rows}
      AND send_id IN (SELECT id FROM sends WHERE status = 'sending'
                      AND kind IN ({KINDS}){sends_where}){NOT_CLAIMED if unclaimed else ""}"""


def _functions(unclaimed: bool) -> None:
    for function, reason, rows, sends_where in FUNCTIONS:
        op.execute(f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
                   f"AS $$ BEGIN {_skip(reason, rows, sends_where, unclaimed)}; "
                   "RETURN NULL; END $$")


def upgrade() -> None:
    op.add_column("send_batches", sa.Column("provider_id", sa.String(200), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        _functions(unclaimed=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(MATERIALIZE)
        _functions(unclaimed=False)
    op.drop_column("send_batches", "provider_id")
