"""Subject tests: a morning send tries 2-4 subjects on a share of the list, then sends the
rest the subject readers clicked most.

Everything goes through the ledger, so each subscriber receives exactly one variant,
exactly once, across crashes:

- ``start_test`` runs in the transaction that creates the send, right after its single
  snapshot: the send's pending recipients are shuffled with a random generator seeded per
  send (the seed is stored, so the split can be reproduced), the first ``test_share`` of
  them are dealt out equally to the variants (``send_recipients.variant`` "A".."D") and
  every other one becomes ``held`` with variant "winner". No batch claims a held row.
- ``decide`` (the scheduler's worker calls it when ``decide_at`` has passed) counts each
  variant's human unique clickers (``human_clickers_by_variant``), picks the highest
  rate (a tie goes to A, then B ...), records the winner and makes the held rows pending
  (or skipped, asking the may-receive rule: ``requeue.reopen``) in one transaction:
  the decision happens once, whoever runs it and however often it is interrupted.
- ``personalise`` gives the runner's message template each row's subject: the test
  share's rows their own variant's, the rest the winner's.
- ``ab_report`` shows each variant's sends, human clickers and rate, with a two-sided
  two-proportion z-test between the two best (p < 0.05 is called significant).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..authoring.subject_variants import LETTERS, variant_problems
from ..db.tables import send_recipients, sends, subject_tests
from ..db.transactions import DB, aware, retry_on_conflict, transaction
from ..errors import UsageError
from . import outcomes
from .requeue import reopen

if TYPE_CHECKING:  # (the renderer: `sends show` and `schedule list` need none of it)
    from .personalize import MessageTemplate

HELD = "held"  # a recipient of the rest of the list, waiting for the decision
WINNER = "winner"  # their variant: whichever wins
DONE = ("sent", "failed", "skipped")
SIGNIFICANT = 0.05
MAX_DECIDE_AFTER = dt.timedelta(hours=24)
CHUNK = 500  # seqs per UPDATE while dealing out variants


# -- the editor's options ------------------------------------------------------------


def parse_share(text: str) -> float:
    """``--test-share 20%`` (or ``20``) as a fraction, 0 < share < 1."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text or "")
    value = float(match.group(1)) if match else -1.0
    if not 0 < value < 100:
        raise UsageError(f"--test-share {text!r}: give the share of the list that gets the "
                         "test as a percentage between 1% and 99%, e.g. --test-share 20%")
    return value / 100


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_after(text: str) -> dt.timedelta:
    """``--decide-after 20m`` (``90s``, ``1h``, ``1h30m``) as a duration of 1 min to 24 h."""
    parts = re.findall(r"(\d+)\s*([smh])", (text or "").lower())
    joined = "".join(f"{n}{u}" for n, u in parts)
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if not parts or joined != re.sub(r"\s+", "", (text or "").lower()) or not (
            60 <= seconds <= MAX_DECIDE_AFTER.total_seconds()):
        raise UsageError(f"--decide-after {text!r}: give how long the test runs before the "
                         "rest of the list gets the winner, from 1m to 24h, e.g. "
                         "--decide-after 20m or 1h30m")
    return dt.timedelta(seconds=seconds)


def check_subjects(subjects: Sequence[str], where: str = "--subject") -> list[str]:
    """The subjects of a test, stripped; a one-line UsageError naming the first problem
    (the rule of ``authoring.subject_variants``)."""
    problems = variant_problems(list(subjects))
    if problems:
        rule, message = problems[0]
        raise UsageError(f"{where}: {message} [{rule}]")
    return [s.strip() for s in subjects]


# -- the test, as stored -------------------------------------------------------------


@dataclass
class SubjectTest:
    send_id: int
    subjects: list[str]
    test_share: float
    seed: str
    decide_at: dt.datetime
    status: str
    winner: str | None
    decided_at: dt.datetime | None
    note: str | None

    @property
    def variants(self) -> dict[str, str]:
        """Variant letter -> subject, in order (A first)."""
        return dict(zip(LETTERS, self.subjects, strict=False))


def get_test(db: DB, send_id: int) -> SubjectTest | None:
    """The send's subject test, or None when it has none."""
    with transaction(db, read=True) as conn:
        row = conn.execute(sa.select(subject_tests).where(subject_tests.c.send_id == send_id)
                           ).first()
    if row is None:
        return None
    return SubjectTest(row.send_id, list(row.subjects), row.test_share, row.seed,
                       aware(row.decide_at), row.status, row.winner,  # type: ignore[arg-type]
                       aware(row.decided_at), row.note)


def deal(seqs: Sequence[int], variants: int, share: float, seed: str) -> list[list[int]]:
    """The test share's seqs per variant, equal in number, drawn at random with ``seed``
    (the same seqs and seed always give the same split); everyone else is held back."""
    shuffled = sorted(seqs)
    random.Random(seed).shuffle(shuffled)
    each = max(1, round(len(shuffled) * share / variants))
    each = min(each, len(shuffled) // variants) or 1  # a tiny list: everyone is tested
    return [sorted(shuffled[n * each:(n + 1) * each]) for n in range(variants)]


def start_test(conn: sa.Connection, send_id: int, subjects: Sequence[str], share: float,
               decide_at: dt.datetime, seed: str | None = None) -> dict[str, int]:
    """Record the test and deal the send's pending recipients out to its variants, in the
    caller's transaction (the one that snapshotted them). Returns recipients per variant
    and ``held``."""
    seed = seed or secrets.token_hex(16)
    conn.execute(subject_tests.insert().values(
        send_id=send_id, subjects=list(subjects), test_share=share, seed=seed,
        decide_at=decide_at, status="testing"))
    r = send_recipients.c
    mine = [r.send_id == send_id, outcomes.claimable(conn, send_id)]
    seqs = conn.execute(sa.select(r.seq).where(*mine)).scalars().all()
    counts: dict[str, int] = {}
    for letter, chosen in zip(LETTERS, deal(seqs, len(subjects), share, seed), strict=False):
        for n in range(0, len(chosen), CHUNK):
            conn.execute(send_recipients.update()
                         .where(*mine, r.seq.in_(chosen[n:n + CHUNK])).values(variant=letter))
        counts[letter] = len(chosen)
    counts[HELD] = conn.execute(send_recipients.update().where(*mine, r.variant.is_(None))
                                .values(status=HELD, variant=WINNER)).rowcount
    conn.execute(sends.update().where(sends.c.id == send_id).values(subject=subjects[0]))
    return counts


@dataclass
class Plan:
    """What the editor asked for: the subjects, the test share, how long to wait."""

    subjects: list[str]
    share: float
    after: dt.timedelta
    seed: str | None = None  # None: a fresh random seed per send (stored with the test)


DEFAULT_SHARE = "20%"
DEFAULT_AFTER = "20m"


def plan_for(issue_variants: Sequence[str], subjects: Sequence[str] = (),
             share: str | None = None, after: str | None = None) -> Plan | None:
    """The subject test an editor asks for, as ``newsletter send`` and ``newsletter
    schedule`` take it: ``--subject`` options, else the issue's ``subject_variants``;
    ``--test-share`` and ``--decide-after`` (or their defaults). None without subjects;
    a one-line UsageError for options without a test or a bad value."""
    chosen = check_subjects(subjects) if subjects else list(issue_variants)
    if not chosen:
        if share is not None or after is not None:
            raise UsageError("--test-share and --decide-after need a subject test: give two "
                             "to four --subject options, or subject_variants in the issue's "
                             "front matter")
        return None
    return Plan(chosen, parse_share(share or DEFAULT_SHARE),
                parse_after(after or DEFAULT_AFTER))


def stored_options(plan: Plan, *, from_issue: bool) -> dict[str, object]:
    """What a schedule keeps of its test: ``subjects`` None when they are the issue's
    ``subject_variants`` (read again, like the rest of the issue, when it is due)."""
    return {"subjects": None if from_issue else list(plan.subjects), "share": plan.share,
            "after_seconds": int(plan.after.total_seconds())}


def plan_of_stored(options: dict | None, issue_variants: Sequence[str]) -> Plan | None:
    """The test a due schedule runs: its stored options with the issue as it is now (no
    options stored: the issue's ``subject_variants`` with the defaults, as ``newsletter
    send`` would run them). None when there are no subjects to test."""
    if options is None:
        return plan_for(issue_variants)
    subjects = options.get("subjects") or list(issue_variants)
    if not subjects:
        return None
    return Plan(list(subjects), float(options["share"]),
                dt.timedelta(seconds=int(options["after_seconds"])))


def create_tested_send(db: DB, plan: Plan, now: dt.datetime, **create: object) -> int:
    """``ledger.create_send`` of a real send (its recipients snapshotted at once, never in
    chunks) and its subject test, in one transaction: a send with a test exists whole or
    not at all."""
    from . import ledger

    with transaction(db) as conn:
        send_id = ledger.create_send(conn, **create)  # type: ignore[arg-type]
        start_test(conn, send_id, plan.subjects, plan.share, now + plan.after, plan.seed)
    return send_id


# -- the decision --------------------------------------------------------------------


def human_clickers_by_variant(db: DB, send_id: int) -> dict[str, int]:
    """Human unique clickers per variant of the send's test share ({} with no clicks):
    the people whose clicks ``feedback.clicks`` judges a person's (link scanners' HEAD
    requests, canary hits and bursts do not count), by the variant they were sent."""
    from ..feedback.clicks import classified

    humans = {c.subscriber_id for c in classified(db, send_id) if c.human}
    if not humans:
        return {}
    r = send_recipients.c
    counts: dict[str, int] = {}
    with transaction(db, read=True) as conn:
        for variant, subscriber_id in conn.execute(
                sa.select(r.variant, r.subscriber_id)
                .where(r.send_id == send_id, r.variant.in_(LETTERS))):
            if subscriber_id in humans:
                counts[variant] = counts.get(variant, 0) + 1
    return counts


def sent_by_variant(db: DB, send_id: int) -> dict[str, int]:
    """Recipients of the test share who were sent their variant."""
    r = send_recipients.c
    with transaction(db, read=True) as conn:
        rows = conn.execute(sa.select(r.variant, sa.func.count())
                            .where(r.send_id == send_id, outcomes.sent(conn, send_id),
                                   r.variant.in_(LETTERS)).group_by(r.variant)).all()
    return {variant: int(n) for variant, n in rows}


def rate(clickers: int, sent: int) -> float:
    return clickers / sent if sent else 0.0


def choose(letters: Sequence[str], sent: dict[str, int], clickers: dict[str, int]) -> str:
    """The variant with the highest human unique click rate; a tie goes to the earlier
    letter (A before B)."""
    return max(letters, key=lambda v: (rate(clickers.get(v, 0), sent.get(v, 0)),
                                       -letters.index(v)))


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of the two-proportion z-test (None without sends on a side)."""
    if not n1 or not n2:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return 1.0
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def due_tests(db: DB, now: dt.datetime) -> list[int]:
    """Sends whose subject test is still testing and due for its decision."""
    with transaction(db, read=True) as conn:
        return list(conn.execute(
            sa.select(subject_tests.c.send_id)
            .where(subject_tests.c.status == "testing", subject_tests.c.decide_at <= now)
            .order_by(subject_tests.c.decide_at)).scalars())


def next_decision(db: DB) -> dt.datetime | None:
    """When the soonest decision is due."""
    with transaction(db, read=True) as conn:
        due = conn.execute(sa.select(sa.func.min(subject_tests.c.decide_at))
                           .where(subject_tests.c.status == "testing")).scalar()
    return aware(due)


def decide(db: DB, send_id: int, now: dt.datetime) -> SubjectTest | None:
    """Pick the winner and release the rest of the list to it, once: in one transaction
    that only the first caller's conditional UPDATE wins. None when the test is not due
    or was decided already."""
    test = get_test(db, send_id)
    if test is None or test.status != "testing" or test.decide_at > now:
        return None
    letters = list(test.variants)
    sent, clickers = sent_by_variant(db, send_id), human_clickers_by_variant(db, send_id)
    winner = choose(letters, sent, clickers)
    note = "; ".join(f"{v} {clickers.get(v, 0)}/{sent.get(v, 0)}" for v in letters)

    def work() -> bool:
        with transaction(db) as conn:
            won = conn.execute(
                subject_tests.update()
                .where(subject_tests.c.send_id == send_id, subject_tests.c.status == "testing")
                .values(status="decided", winner=winner, decided_at=now,
                        note=f"human unique clickers/sent: {note}")).rowcount
            if not won:
                return False
            released = reopen(conn, send_id, [send_recipients.c.send_id == send_id,
                                              send_recipients.c.status == HELD])
            if released.pending:
                conn.execute(sends.update().where(sends.c.id == send_id,
                                                  sends.c.status != "cancelled")
                             .values(status="sending", finished_at=None))
        return True

    return get_test(db, send_id) if retry_on_conflict(work) else None


# -- sending: each row's subject -----------------------------------------------------


def personalise(db: DB, send_id: int, template: MessageTemplate) -> MessageTemplate:
    """The send's template choosing each row's subject by its variant (the template
    itself for a send without a subject test). Rows of the rest of the list get the
    winner, looked up when the first of them is built if the test was undecided now."""
    test = get_test(db, send_id)
    if test is None:
        return template
    r = send_recipients.c
    with transaction(db, read=True) as conn:
        variant_of = dict(conn.execute(
            sa.select(r.seq, r.variant)
            .where(r.send_id == send_id, r.variant.in_(LETTERS), r.status.not_in(DONE),
                   ~outcomes.sent(conn, send_id))
        ).all())

    def winner() -> str | None:
        decided = get_test(db, send_id)
        return decided.winner if decided is not None else None

    return template.with_variants(test.variants, variant_of, test.winner, winner)


# -- the report ----------------------------------------------------------------------


@dataclass
class VariantLine:
    variant: str
    subject: str
    sent: int
    clickers: int

    @property
    def rate(self) -> float:
        return rate(self.clickers, self.sent)


@dataclass
class ABReport:
    send_id: int
    status: str
    decide_at: dt.datetime
    winner: str | None
    variants: list[VariantLine]
    p_value: float | None  # the two best variants' difference
    rest: dict[str, int]  # the rest of the list: held, sent, ... (status -> recipients)

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANT

    def verdict(self) -> str:
        """One plain sentence on what the numbers say."""
        ranked = sorted(self.variants, key=lambda v: -v.rate)
        if len(ranked) < 2 or self.p_value is None:
            return "no variant has been sent yet: nothing to compare"
        first, second = ranked[0], ranked[1]
        if not self.significant:
            return (f"the difference is not significant (p = {self.p_value:.3f}, not below "
                    f"{SIGNIFICANT}): {first.variant} and {second.variant} may do equally well")
        return (f"{first.variant} did better than {second.variant}, a significant difference "
                f"(p = {self.p_value:.3f})")

    def lines(self) -> list[str]:
        head = (f"subject test: winner {self.winner}, decided" if self.winner else
                f"subject test: deciding at {self.decide_at:%Y-%m-%d %H:%M} UTC")
        out = [head]
        for v in self.variants:
            mark = " (winner)" if v.variant == self.winner else ""
            out.append(f"  {v.variant}{mark}: {v.sent:,} sent, {v.clickers:,} human clickers, "
                       f"{v.rate:.1%}  {v.subject}")
        out.append(f"  {self.verdict()}")
        rest = ", ".join(f"{n:,} {status}" for status, n in sorted(self.rest.items()))
        out.append(f"  rest of the list: {rest or 'nobody'}")
        return out

    def as_dict(self) -> dict:
        return {"status": self.status, "decide_at": self.decide_at.isoformat(),
                "winner": self.winner, "p_value": self.p_value,
                "significant": self.significant, "verdict": self.verdict(), "rest": self.rest,
                "variants": [{"variant": v.variant, "subject": v.subject, "sent": v.sent,
                              "human_clickers": v.clickers, "rate": round(v.rate, 6)}
                             for v in self.variants]}


def ab_report(db: DB, send_id: int) -> ABReport | None:
    """The send's subject test in numbers (None without one)."""
    test = get_test(db, send_id)
    if test is None:
        return None
    sent, clickers = sent_by_variant(db, send_id), human_clickers_by_variant(db, send_id)
    lines = [VariantLine(v, s, sent.get(v, 0), clickers.get(v, 0))
             for v, s in test.variants.items()]
    ranked = sorted(lines, key=lambda v: -v.rate)
    p = (two_proportion_p(ranked[0].clickers, ranked[0].sent, ranked[1].clickers,
                          ranked[1].sent) if len(ranked) > 1 else None)
    r = send_recipients.c
    with transaction(db, read=True) as conn:
        status = outcomes.status_of(conn)
        rest = dict(conn.execute(sa.select(status, sa.func.count())
                                 .where(r.send_id == send_id, r.variant == WINNER)
                                 .group_by(status)).all())
    return ABReport(send_id, test.status, test.decide_at, test.winner, lines, p,
                    {status: int(n) for status, n in rest.items()})
