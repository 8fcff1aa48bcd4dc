"""``newsletter sends report ID``: a send's engagement report as a table, JSON or CSV."""

from __future__ import annotations

import io
import json

import click
from sqlalchemy.engine import Engine

from newsletter.feedback.clickreport import SendReport, send_report

CSV_HEADER = ("email", "link", "section", "clicked_at", "counted_as")


def _table(rows, label: str) -> list[str]:  # noqa: ANN001
    lines = [f"  {label:52}  {'people':>7}  {'clickers':>8}  {'flagged':>7}"]
    lines += [f"  {r.label[:52]:52}  {r.human:>7,}  {r.clickers:>8,}  {r.flagged:>7,}"
              for r in rows]
    return lines


def lines(report: SendReport) -> list[str]:
    """The terminal report, line by line."""
    send = report.send
    flagged = sum(report.flagged.values())
    why = ", ".join(f"{k} {v:,}" for k, v in sorted(report.flagged.items()))
    out = [f"send {send.id}: {send.subject}",
           f"  list {send.list_name}, sent {report.sent:,}"]
    if not report.tracked:
        out.append("  clicks: not tracked for this send (track_clicks was off)")
    out += [
        f"  unique clickers {report.clickers:,}, click rate {report.rate:.1%}, "
        f"people's clicks {report.human:,}",
        f"  flagged clicks {flagged:,} (link scanners, not counted"
        + (f": {why})" if why else ")"),
        f"  unsubscribes {report.unsubscribes:,}, bounces {report.bounces:,}, "
        f"complaints {report.complaints:,}",
    ]
    if report.opens.opens:
        out.append(f"  opens {report.opens.opens:,} by {report.opens.openers:,} "
                   f"({report.opens.label}; never used to decide anything)")
    if report.tracked:
        out += ["", *_table(sorted(report.sections, key=lambda r: -r.human), "section")]
        out += ["", *_table(report.links, "link (section)")]
        out += [f"    [{r.idx}] {r.url}" for r in report.links]
    return out


def echo_report(engine: Engine, send_id: int, fmt: str) -> None:
    report = send_report(engine, send_id, who=fmt == "csv")
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif fmt == "csv":
        from newsletter.audience.csvsafe import writer

        buffer = io.StringIO()
        out = writer(buffer)
        out.writerow(CSV_HEADER)
        out.writerows((email, url, section, at.isoformat(timespec="seconds"), kind)
                      for email, url, section, at, kind in report.who)
        click.echo(buffer.getvalue(), nl=False)
    else:
        click.echo("\n".join(lines(report)))
