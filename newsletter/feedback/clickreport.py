"""What a send's readers used: the numbers of ``newsletter sends report`` and the report
pages, from the ledger, the tracked clicks (``clicks``) and the feedback counts.

- clicks per link and per section, people's (human) and flagged apart;
- unique clickers (subscribers with a person's click) and the click rate (of those sent);
- unsubscribes, bounces and complaints: the larger of what the providers' webhooks told
  (``effects.engagement``) and what happened to this send's recipients since it was
  created (their status, or their membership of the send's list), so an SMTP newsroom
  without webhooks sees them too;
- clicks per hour over the first 48 hours; opens only with ``track_opens``, labelled.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from ..db.tables import memberships, send_recipients, subscribers
from ..db.transactions import DB, aware, transaction
from ..delivery import ledger, outcomes
from . import clicks as clicklog
from .effects import engagement

HOURS = 48


@dataclass
class Row:
    """One line of a table: a link or a section."""

    label: str
    human: int
    flagged: int
    clickers: int
    url: str = ""
    idx: int = 0


@dataclass
class SendReport:
    send: ledger.SendInfo
    sent: int
    links: list[Row]
    sections: list[Row]
    clickers: int
    human: int
    flagged: dict[str, int]  # clicks per flag: head, canary, burst
    unsubscribes: int
    bounces: int
    complaints: int
    hourly: list[int]  # people's clicks in each of the first 48 hours
    opens: clicklog.Opens
    tracked: bool
    who: list[tuple[str, str, str, dt.datetime, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.clickers / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "send_id": self.send.id, "subject": self.send.subject, "list": self.send.list_name,
            "tracked": self.tracked, "sent": self.sent, "unique_clickers": self.clickers,
            "click_rate": round(self.rate, 4), "human_clicks": self.human,
            "flagged_clicks": sum(self.flagged.values()), "flagged": dict(self.flagged),
            "unsubscribes": self.unsubscribes, "bounces": self.bounces,
            "complaints": self.complaints,
            "sections": [{"section": r.label, "human_clicks": r.human,
                          "flagged_clicks": r.flagged, "unique_clickers": r.clickers}
                         for r in self.sections],
            "links": [{"index": r.idx, "url": r.url, "section": r.label,
                       "human_clicks": r.human, "flagged_clicks": r.flagged,
                       "unique_clickers": r.clickers} for r in self.links],
            "clicks_by_hour": self.hourly,
            "opens": {"opens": self.opens.opens, "openers": self.opens.openers,
                      "note": self.opens.label},
        }


def _since(conn: sa.Connection, send: ledger.SendInfo) -> dict[str, int]:
    """This send's recipients whose status (or membership of its list) changed to
    unsubscribed, bounced or complained since the send was created."""
    r, s, m = send_recipients.c, subscribers.c, memberships.c
    after = send.created_at
    rows = conn.execute(
        sa.select(s.status, s.status_changed_at, m.status.label("member"),
                  m.status_changed_at.label("member_at"))
        .select_from(send_recipients.join(subscribers, s.id == r.subscriber_id)
                     .outerjoin(memberships, sa.and_(m.subscriber_id == s.id,
                                                     m.list_id == send.list_id)))
        .where(r.send_id == send.id, outcomes.sent(conn))
        .where(sa.or_(sa.and_(s.status != "active", s.status_changed_at >= after),
                      sa.and_(m.status == "unsubscribed", m.status_changed_at >= after)))
    ).all()
    out = {"unsubscribed": 0, "bounced": 0, "complained": 0}
    for row in rows:
        if row.status != "active" and aware(row.status_changed_at) >= aware(after):
            out[row.status] += 1
        else:
            out["unsubscribed"] += 1
    return out


def _emails(conn: sa.Connection, send_id: int) -> dict[int, str]:
    r = send_recipients.c
    rows = conn.execute(sa.select(r.subscriber_id, r.email).where(
        r.send_id == send_id, r.subscriber_id.is_not(None))).all()
    return {row.subscriber_id: row.email for row in rows}


def _tables(found: list[clicklog.Click], links: list[clicklog.Link]
            ) -> tuple[list[Row], list[Row]]:
    per_link: dict[int, clicklog.Tally] = {}
    per_section: dict[str, clicklog.Tally] = {}
    by_idx = {link.idx: link for link in links}
    for link in links:
        if link.idx != clicklog.CANARY:
            per_link[link.idx] = clicklog.Tally()
            per_section.setdefault(link.section, clicklog.Tally())
    for click in found:
        link = by_idx.get(click.link_idx)
        if link is None or click.link_idx == clicklog.CANARY:
            continue
        per_link[link.idx].add(click)
        per_section[link.section].add(click)
    link_rows = [Row(by_idx[i].section, t.human, t.flagged, len(t.clickers),
                     by_idx[i].url, i) for i, t in per_link.items()]
    section_rows = [Row(label, t.human, t.flagged, len(t.clickers))
                    for label, t in per_section.items()]
    return link_rows, section_rows


def send_report(db: DB, send_id: int, *, who: bool = False) -> SendReport:
    """Everything the report shows for one send (``who``: also each click's address)."""
    send = ledger.get_send(db, send_id)
    links = clicklog.links(db, send_id)
    found = clicklog.classified(db, send_id)
    link_rows, section_rows = _tables(found, links)
    flagged: dict[str, int] = {}
    hourly = [0] * HOURS
    start = aware(send.created_at)
    for click in found:
        if not click.human:
            flagged[click.flag] = flagged.get(click.flag, 0) + 1
            continue
        hour = int((click.at - start).total_seconds() // 3600)
        if 0 <= hour < HOURS:
            hourly[hour] += 1
    webhook = engagement(db, send_id).recipients
    with transaction(db) as conn:
        since = _since(conn, send)
        emails = _emails(conn, send_id) if who else {}
    by_idx = {link.idx: link for link in links}
    report = SendReport(
        send=send, sent=send.counts.get("sent", 0), links=link_rows, sections=section_rows,
        clickers=len({c.subscriber_id for c in found if c.human}),
        human=sum(1 for c in found if c.human), flagged=flagged,
        unsubscribes=max(since["unsubscribed"], webhook["unsubscribed"]),
        bounces=max(since["bounced"] + send.counts.get("failed", 0), webhook["bounced"]),
        complaints=max(since["complained"], webhook["complained"]),
        hourly=hourly, opens=clicklog.open_counts(db, send_id), tracked=bool(links))
    if who:
        report.who = [
            (emails.get(c.subscriber_id, ""), by_idx[c.link_idx].url if c.link_idx in by_idx
             else "", by_idx[c.link_idx].section if c.link_idx in by_idx else "", c.at,
             "human" if c.human else f"flagged: {c.flag}")
            for c in found]
    return report


@dataclass
class ListDays:
    """A list's subscribers over time: per day, joined, unsubscribed, bounced."""

    list_name: str
    days: list[dt.date]
    joined: list[int]
    unsubscribed: list[int]
    bounced: list[int]
    subscribed_now: int
    sends: list[ledger.SendInfo]


def list_days(db: DB, list_name: str, *, days: int = 30, today: dt.date | None = None
              ) -> ListDays:
    """The last ``days`` days of a list: growth, unsubscribes and bounces per day (UTC)."""
    from ..audience.lists import get_list

    mailing_list = get_list(db, list_name)
    last = today or dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time(), dt.UTC)
    m, s = memberships.c, subscribers.c
    with transaction(db) as conn:
        rows = conn.execute(
            sa.select(m.created_at, m.status, m.status_changed_at,
                      s.status.label("global_status"), s.status_changed_at.label("global_at"))
            .select_from(memberships.join(subscribers, s.id == m.subscriber_id))
            .where(m.list_id == mailing_list.id)
            .where(sa.or_(m.created_at >= since, m.status_changed_at >= since,
                          s.status_changed_at >= since))
        ).all()
        now_count = conn.execute(
            sa.select(sa.func.count()).select_from(memberships.join(
                subscribers, s.id == m.subscriber_id))
            .where(m.list_id == mailing_list.id, m.status == "subscribed",
                   s.status == "active")).scalar_one()
    index = {first + dt.timedelta(days=n): n for n in range(days)}
    joined, unsubscribed, bounced = [0] * days, [0] * days, [0] * days

    def bump(counts: list[int], when: dt.datetime | None) -> None:
        day = aware(when).date() if when is not None else None  # type: ignore[union-attr]
        if day in index:
            counts[index[day]] += 1

    for row in rows:
        bump(joined, row.created_at)
        if row.global_status == "bounced":
            bump(bounced, row.global_at)
        elif row.global_status in ("unsubscribed", "complained"):
            bump(unsubscribed, row.global_at)
        elif row.status == "unsubscribed":
            bump(unsubscribed, row.status_changed_at)
    sends = [send for send in ledger.list_sends(db, limit=200)
             if send.list_id == mailing_list.id and send.kind == "real"]
    return ListDays(mailing_list.name, list(index), joined, unsubscribed, bounced,
                    int(now_count), sends)
