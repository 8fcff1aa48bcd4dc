"""Sign-up with double opt-in: a sign-up is *pending* until its confirmation is pressed.

A pending sign-up is a row of ``signups`` (one per address and list), not a subscriber:
the one may-receive rule (``receiving``) needs a subscriber row, so nobody pending can
receive an issue. Pressing the confirmation (a POST, never a GET) creates the subscriber
or makes it active again, and subscribes it to the lists, through ``status_changes`` (the
one status path; ``resubscribe=True``: a new confirmed opt-in is the explicit request
an unsubscribed, bounced or complained address needs). The row stays as the consent
record: when, how (form or api), the consent text and version, an HMAC of the IP, and
when it was confirmed.

Nothing revealed: ``request`` returns nothing a caller could tell apart for a new,
pending, active or unsubscribed address. Nothing bombed: per-IP and per-address limits
(``ratelimit``, in the database), and an address already pending or subscribed gets at
most one further email per day.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..config import Settings
from ..db.tables import lists, memberships, signups, subscribers
from ..db.transactions import DB, aware, retry_on_conflict, transaction, utcnow
from ..delivery.headersafe import clean_text
from ..errors import InvalidEmail, SignupRateLimited, SignupRefused
from . import ratelimit, status_changes, tokens
from .emails import normalize_email
from .signup_mail import Mailer, build

log = logging.getLogger("newsletter.signup")

CONFIRM = "confirm"
CANCEL = "signup-cancel"
MAX_LISTS = 4  # lists per sign-up (the confirm token carries an id and round for each)
HOUR, DAY = 3600, 86400


@dataclass(frozen=True)
class SignupRequest:
    email: str
    name: str | None
    lists: tuple[str, ...]
    source: str  # form | api
    ip: str | None


@dataclass
class Planned:
    """What one sign-up decided, to be mailed after its transaction committed."""

    email: str = ""
    name: str | None = None
    pending: list[tuple[int, int, int, str]] | None = None  # (row id, round, list id, name)
    already: list[tuple[int, str]] | None = None  # (list id, name) subscribed already
    mail: bool = False
    limited: bool = False  # over the per-IP limit


def _disposable(domain: str) -> bool:
    from disposable_email_domains import blocklist

    parts = domain.lower().split(".")
    return any(".".join(parts[i:]) in blocklist for i in range(len(parts) - 1))


def check_address(settings: Settings, text: str) -> tuple[str, str]:
    """(normalised address, key), or ``SignupRefused`` saying what to change."""
    try:
        email, key = normalize_email(text)
    except InvalidEmail:
        raise SignupRefused("That is not an email address: check it and try again.") from None
    if settings.signup_block_disposable and _disposable(key.rsplit("@", 1)[1]):
        raise SignupRefused("Please use a permanent email address: addresses from "
                            "disposable-mail services cannot subscribe.")
    return email, key


def public_lists(db: DB, settings: Settings) -> list[tuple[int, str, str | None]]:
    """(id, name, description) of the lists the public may join, in the configured order."""
    if not settings.public_lists:
        return []
    with transaction(db, read=True) as conn:
        rows = conn.execute(sa.select(lists.c.id, lists.c.name, lists.c.description)
                            .where(lists.c.name.in_(settings.public_lists))).all()
    order = {name: i for i, name in enumerate(settings.public_lists)}
    return sorted(((r.id, r.name, r.description) for r in rows), key=lambda r: order[r[1]])


def _chosen(db: DB, settings: Settings, names: tuple[str, ...]) -> list[tuple[int, str]]:
    offered = {name: id_ for id_, name, _ in public_lists(db, settings)}
    if not offered:
        raise SignupRefused("This newsletter takes no sign-ups here yet.")
    wanted = list(dict.fromkeys(names)) or ([next(iter(offered))] if len(offered) == 1 else [])
    if not wanted:
        raise SignupRefused("Choose at least one newsletter to receive.")
    if len(wanted) > MAX_LISTS or any(name not in offered for name in wanted):
        raise SignupRefused("Choose among the newsletters offered on the form.")
    return [(offered[name], name) for name in wanted]


def request(engine: Engine, settings: Settings, req: SignupRequest, mailer: Mailer) -> None:
    """Take a sign-up and send its confirmation now (``record`` then ``deliver``)."""
    plan = record(engine, settings, req)
    if plan is not None:
        deliver(engine, settings, plan, mailer)


def record(engine: Engine, settings: Settings, req: SignupRequest) -> Planned | None:
    """Take a sign-up: record it pending, within the limits; returns the email to send
    (``deliver``), if any. Raises ``SignupRefused`` (bad input, the same for everyone) or
    ``SignupRateLimited`` (this IP address, this hour); otherwise the caller answers the
    same whatever happened (and, sending after the answer, in the same time)."""
    email, key = check_address(settings, req.email)
    plan = retry_on_conflict(lambda: _record(engine, settings, req, email, key))
    if plan.limited:
        raise SignupRateLimited("Too many sign-ups from your network: try again in an hour.")
    return plan if plan.mail else None


def _record(engine: Engine, settings: Settings, req: SignupRequest, email: str, key: str
            ) -> Planned:
    """One transaction: the limits counted, the sign-up recorded (or not)."""
    secret = settings.secret_key or ""
    now = utcnow()
    plan = Planned(email=email, name=clean_text(req.name) or None, pending=[], already=[])
    with engine.begin() as conn:
        chosen = _chosen(conn, settings, req.lists)
        if req.ip and not ratelimit.hit(conn, ratelimit.keyed(secret, "ip", req.ip), HOUR,
                                        settings.signup_ip_limit):
            plan.limited = True  # the hit is counted (committed), then refused
            return plan
        if not ratelimit.hit(conn, ratelimit.keyed(secret, "address", key), DAY,
                             settings.signup_address_limit):
            return plan  # silently: the same answer, no email
        sub = conn.execute(sa.select(subscribers.c.id, subscribers.c.status)
                           .where(subscribers.c.email_key == key)).first()
        joined = _subscribed_lists(conn, sub)
        rows = {r.list_id: r for r in conn.execute(sa.select(signups).where(
            signups.c.email_key == key, signups.c.list_id.in_([i for i, _ in chosen])))}
        repeat = False
        for list_id, name in chosen:
            row = rows.get(list_id)
            if list_id in joined:
                plan.already.append((list_id, name))
                repeat = True
                continue
            repeat = repeat or (row is not None and row.status == "pending")
            row_id, round_ = _upsert(conn, settings, req, email, key, plan.name, list_id, row, now)
            plan.pending.append((row_id, round_, list_id, name))
        plan.mail = not repeat or ratelimit.hit(
            conn, ratelimit.keyed(secret, "resend", key), DAY, 1)
    return plan


def _subscribed_lists(conn: sa.Connection, sub: Any) -> set[int]:
    if sub is None or sub.status != "active":
        return set()
    return set(conn.execute(sa.select(memberships.c.list_id).where(
        memberships.c.subscriber_id == sub.id, memberships.c.status == "subscribed")).scalars())


def _upsert(conn: sa.Connection, settings: Settings, req: SignupRequest, email: str, key: str,
            name: str | None, list_id: int, row: Any, now: dt.datetime) -> tuple[int, int]:
    consent = {"email": email, "name": name, "source": req.source,
               "consent_text": settings.signup_consent_text,
               "consent_version": settings.signup_consent_version,
               "ip_hash": ratelimit.ip_hash(settings.secret_key or "", req.ip),
               "requested_at": now, "status": "pending", "confirmed_at": None}
    if row is None:
        values = {**consent, "email_key": key, "list_id": list_id, "round": 1}
        stmt = _insert(conn).values(**values).on_conflict_do_nothing().returning(signups.c.id)
        new_id = conn.execute(stmt).scalar()
        if new_id is not None:
            return int(new_id), 1
        row = conn.execute(sa.select(signups).where(  # signed up at this very moment
            signups.c.email_key == key, signups.c.list_id == list_id)).one()
    round_ = row.round if row.status == "pending" else row.round + 1
    conn.execute(sa.update(signups).where(signups.c.id == row.id)
                 .values(**consent, round=round_))
    return int(row.id), int(round_)


def _insert(conn: sa.Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(signups)


def confirm_token(settings: Settings, pending: list[tuple[int, int, int, str]]) -> str:
    values = [v for row_id, round_, _, _ in pending for v in (row_id, round_)]
    return tokens.sign(CONFIRM, settings, *values)


def deliver(engine: Engine, settings: Settings, plan: Planned, mailer: Mailer) -> None:
    """Send the confirmation (or "already subscribed") email ``record`` planned."""
    base = settings.base_url
    if plan.pending:
        token = confirm_token(settings, plan.pending)
        cancel = tokens.sign(CANCEL, settings, *[v for r in plan.pending for v in r[:2]])
        message = build(settings, email=plan.email, name=plan.name, list_id=plan.pending[0][2],
                        list_names=[r[3] for r in plan.pending],
                        confirm_url=f"{base}/confirm/{token}", cancel_url=f"{base}/confirm/{cancel}")
    else:
        assert plan.already
        cancel = tokens.sign(CANCEL, settings, 0, 0)
        message = build(settings, email=plan.email, name=plan.name, list_id=plan.already[0][0],
                        list_names=[name for _, name in plan.already], confirm_url=None,
                        cancel_url=f"{base}/confirm/{cancel}")
    if mailer.send(message) and plan.pending:
        with engine.begin() as conn:
            conn.execute(sa.update(signups).where(signups.c.id.in_([r[0] for r in plan.pending]))
                         .values(mailed_at=utcnow()))


# -- the confirmation link -------------------------------------------------------------


def _pairs(data: tokens.PurposeData) -> list[tuple[int, int]]:
    values = data.values
    if len(values) % 2:
        raise tokens.InvalidToken("invalid confirmation link")
    return list(zip(values[::2], values[1::2], strict=True))


def check(settings: Settings, token: str) -> tuple[str, list[tuple[int, int]]]:
    """(purpose, [(row id, round)]) of a confirmation or cancel link; ``InvalidToken``."""
    for purpose in (CONFIRM, CANCEL):
        try:
            data = tokens.verify(purpose, token, settings,
                                 max_age_days=settings.signup_confirm_days)
        except tokens.BadSignature:
            continue
        return purpose, _pairs(data)
    raise tokens.InvalidToken("invalid confirmation link")


def pending_lists(db: DB, pairs: list[tuple[int, int]]) -> tuple[list[str], bool]:
    """The names of the token's lists, and whether any of them still awaits confirmation."""
    rows = _rows(db, pairs)
    return [r.list_name for r in rows], any(r.status == "pending" for r in rows)


def confirmed_lists(db: DB, pairs: list[tuple[int, int]]) -> list[str]:
    """The names of the token's lists whose sign-up is confirmed (a second press)."""
    return [r.list_name for r in _rows(db, pairs) if r.status == "confirmed"]


def _rows(db: DB, pairs: list[tuple[int, int]]) -> list[Any]:
    wanted = dict(pairs)
    with transaction(db, read=True) as conn:
        rows = conn.execute(sa.select(signups, lists.c.name.label("list_name"))
                            .join(lists, lists.c.id == signups.c.list_id)
                            .where(signups.c.id.in_(list(wanted)))).all()
    return [r for r in rows if wanted.get(r.id) == r.round]


def confirm(engine: Engine, pairs: list[tuple[int, int]]) -> list[str]:
    """Confirm the token's pending sign-ups: the subscriber becomes active and joins the
    lists. Idempotent; returns the lists now confirmed (empty: nothing left to confirm)."""
    return confirm_subscriber(engine, pairs)[0]


def confirm_subscriber(engine: Engine, pairs: list[tuple[int, int]]
                       ) -> tuple[list[str], int | None]:
    """``confirm``, also returning the subscriber now confirmed (None: nothing was)."""
    return retry_on_conflict(lambda: _confirm(engine, pairs))


def _confirm(engine: Engine, pairs: list[tuple[int, int]]) -> tuple[list[str], int | None]:
    wanted = dict(pairs)
    now = utcnow()
    with engine.begin() as conn:
        rows = [r for r in conn.execute(
            sa.select(signups, lists.c.name.label("list_name"))
            .join(lists, lists.c.id == signups.c.list_id)
            .where(signups.c.id.in_(list(wanted)), signups.c.status == "pending")
            .with_for_update(of=signups)).all() if wanted.get(r.id) == r.round]
        if not rows:
            return [], None
        sub_id = _active_subscriber(conn, rows[0], now)
        for row in rows:
            status_changes.set_membership(conn, row.list_id, "subscribed",
                                          [(sub_id, f"confirmed sign-up ({row.source})")],
                                          resubscribe=True, now=now)
        conn.execute(sa.update(signups).where(signups.c.id.in_([r.id for r in rows]))
                     .values(status="confirmed", confirmed_at=now))
    return [r.list_name for r in rows], sub_id


def welcome_confirmed(engine: Engine, settings: Settings, subscriber_id: int) -> None:
    """Send the welcome email (``audience.welcome``) to a subscriber who has just confirmed:
    run after the confirmation page has been answered. Exactly once per subscriber (the
    ledger and ``welcomed_at``); a failure is logged and the next confirmation or
    ``newsletter welcome resume`` finishes it."""
    from . import welcome

    try:
        welcome.send_welcome(engine, settings, [subscriber_id])
    except Exception:  # a background task: the reader already has their page; log it all
        log.exception("welcome email for subscriber %s not sent", subscriber_id)


def _active_subscriber(conn: sa.Connection, row: Any, now: dt.datetime) -> int:
    """The subscriber of ``row``'s address, created or made active again (a confirmed
    opt-in is the explicit resubscribe ``status_changes`` asks for)."""
    found = conn.execute(sa.select(subscribers.c.id, subscribers.c.status)
                         .where(subscribers.c.email_key == row.email_key)).first()
    if found is None:
        values = {"email": row.email, "email_key": row.email_key, "name": row.name,
                  "attributes": {}, "status": "active", "status_changed_at": now,
                  "status_reason": f"confirmed sign-up ({row.source})", "created_at": now,
                  "source": f"sign-up {row.source}"}
        return int(conn.execute(sa.insert(subscribers).values(**values)
                                .returning(subscribers.c.id)).scalar_one())
    if found.status != "active":
        status_changes.change(conn, found.id, "active", f"confirmed sign-up ({row.source})",
                              resubscribe=True, now=now)
    return int(found.id)


def cancel(engine: Engine, pairs: list[tuple[int, int]]) -> None:
    """"This was not me": the token's pending sign-ups are cancelled (nothing else)."""
    wanted = dict(pairs)
    with engine.begin() as conn:
        for row_id, round_ in wanted.items():
            conn.execute(sa.update(signups).where(
                signups.c.id == row_id, signups.c.round == round_,
                signups.c.status == "pending").values(status="cancelled"))


# -- the consent records ---------------------------------------------------------------


def consents(db: DB, email_key: str) -> list[dict[str, Any]]:
    """The consent records of an address (one per list it signed up to), oldest first."""
    return consents_by_key(db, email_key).get(email_key, [])


def consents_by_key(db: DB, email_key: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every address's consent records (or one address's), by email key."""
    query = (sa.select(signups, lists.c.name.label("list_name"))
             .join(lists, lists.c.id == signups.c.list_id)
             .order_by(signups.c.requested_at, signups.c.id))
    if email_key is not None:
        query = query.where(signups.c.email_key == email_key)
    with transaction(db, read=True) as conn:
        rows = conn.execute(query).all()

    def when(value: dt.datetime | None) -> str | None:
        return aware(value).isoformat() if value is not None else None

    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.email_key, []).append({
            "list": r.list_name, "status": r.status, "signed_up_at": when(r.requested_at),
            "source": r.source, "consent_version": r.consent_version,
            "consent_text": r.consent_text, "ip_hmac": r.ip_hash,
            "confirmed_at": when(r.confirmed_at)})
    return out


def forget(conn: sa.Connection, email_key: str) -> int:
    """Erasure: delete an address's sign-ups and consent records."""
    return conn.execute(sa.delete(signups).where(signups.c.email_key == email_key)).rowcount
