"""The same issue is the same issue, whatever its file is called; URLs from file names
are URL-safe; the archive lists an issue once."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from newsletter.authoring.build import build_file
from newsletter.authoring.slugs import SLUG, file_slug
from newsletter.db.engine import make_engine
from newsletter.db.schema import alembic_config
from newsletter.delivery import archive, ledger, sending
from newsletter.errors import NewsletterError
from newsletter.scheduling import schedules
from newsletter.scheduling.worker import WorkerProcess
from newsletter.web import create_app

from .sendtools import make_project, newsletter_cmd, pg_database, seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

SAMPLE = "issues/2026-11-24.md"


def _issue(settings, name: str, *, replace: tuple[str, str] | None = None) -> Path:
    """A copy of the sample issue (dated 2026-12-01) as issues/NAME."""
    text = (settings.project_dir / SAMPLE).read_text("utf-8")
    text = text.replace("date: 2026-11-24", "date: 2026-12-01")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    path = settings.project_dir / "issues" / name
    path.write_text(text, "utf-8")
    return path


def _send(engine, settings, path: Path, **options) -> ledger.SendInfo:
    prepared = sending.preflight(settings, path)
    started = sending.start(engine, settings, prepared, "daily", backend="outbox", **options)
    return sending.run(engine, settings, started.send.id, backend="outbox")


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` run in the project folder, as an editor would."""
    return subprocess.run(newsletter_cmd(project, *args), capture_output=True, text=True,
                          cwd=project, timeout=120, stdin=subprocess.DEVNULL)


def _outbox(settings) -> int:
    return len(list(settings.outbox_path.glob("*.eml")))


def test_file_slugs_are_url_safe_unique_and_keep_usual_names() -> None:
    assert file_slug("issues/2026-11-24.md") == "2026-11-24"
    names = ["2026-12-01 copy.md", "2026-12-01 Copy.md", "2026-12-01-copy.md",
             "2026-12-01 Café été.md", "2026-12-01 cafe ete.md", "東京.md", "京都.md",
             "a b/../x?.md", "2026-12-01 " + "long " * 40 + ".md"]
    slugs = [file_slug(n) for n in names]
    assert all(SLUG.fullmatch(s) and len(s) <= 80 for s in slugs), slugs
    assert len(set(slugs)) == len(slugs)
    assert slugs[0].startswith("2026-12-01-copy-") and slugs[2] == "2026-12-01-copy"
    assert slugs[3].startswith("2026-12-01-cafe-ete-")


def test_cli_refuses_a_copied_issue_in_one_line_naming_the_earlier_send(tmp_path: Path
                                                                        ) -> None:
    project = tmp_path / "p"
    settings = make_project(project)
    engine = seed(settings, 4)
    _issue(settings, "2026-12-01.md")
    first = _cli(project, "send", "issues/2026-12-01.md", "--list", "daily", "--yes")
    assert first.returncode == 0, first.stderr
    assert _outbox(settings) == 4
    shutil.copyfile(project / "issues/2026-12-01.md", project / "issues/2026-12-01 copy.md")
    copy = _cli(project, "send", "issues/2026-12-01 copy.md", "--list", "daily", "--yes")
    assert copy.returncode == 1
    assert copy.stderr.count("\n") == 1 and "Traceback" not in copy.stderr
    send_id = ledger.list_sends(engine)[0].id
    assert copy.stderr.startswith("newsletter: issues/2026-12-01 copy.md: already sent to "
                                  f"list 'daily' by send {send_id} (issues/2026-12-01.md, ")
    assert "--again" in copy.stderr
    assert _outbox(settings) == 4 and len(ledger.list_sends(engine)) == 1
    engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
def test_a_renamed_copy_is_the_same_issue_by_date_and_subject_or_by_content(
    tmp_path: Path, database: str
) -> None:
    with pg_database() if database == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 3)
        original = _issue(settings, "2026-12-01.md")
        sent = _send(engine, settings, original)
        assert sent.counts == {"sent": 3}
        typo = _issue(settings, "final.md", replace=("Bramford", "Bramforde"))
        with pytest.raises(NewsletterError, match=r"by send \d+ \(.*2026-12-01\.md, the same "
                                                  r"date and subject, 3 sent\)"):
            _send(engine, settings, typo)
        retitled = _issue(settings, "2026-12-01 final.md", replace=(
            "subject: Can the river towns rebuild before spring?", "subject: River towns"))
        with pytest.raises(NewsletterError, match="the same content"):
            _send(engine, settings, retitled)
        # another issue in a reused file name is not the same issue
        other = _issue(settings, "2026-12-01.md", replace=(
            "Can the river towns rebuild before spring?", "A different day"))
        assert _send(engine, settings, other).counts == {"sent": 3}
        assert _outbox(settings) == 6
        # --again sends the copy; the archive still lists the issue once
        assert _send(engine, settings, typo, again=True).counts == {"sent": 3}
        subjects = [e.subject for e in archive.entries(engine)]
        assert sorted(subjects) == ["A different day", "Can the river towns rebuild before "
                                    "spring?"]
        engine.dispose()


def test_copy_links_are_url_safe_and_lead_to_the_one_archive_entry(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    engine = seed(settings, 2)
    original = _issue(settings, "2026-12-01 Café été.md")
    copy = _issue(settings, "2026-12-01 copy.md", replace=("Bramford", "Bramforde"))
    first = sending.preflight(settings, original)
    for prepared in (first, sending.preflight(settings, copy)):
        link = f"{settings.base_url}/archive/{prepared.slug}"
        assert SLUG.fullmatch(prepared.slug)
        assert f'href="{link}"' in prepared.rendered.html
        assert f"Read in your browser: {link}\n" in prepared.rendered.text
    _send(engine, settings, original)
    again = _send(engine, settings, copy, again=True)
    assert [e.slug for e in archive.entries(engine)] == [first.slug]
    # the copy's messages link to the issue's one archive entry
    html, text = ledger.send_content(engine, again.id)
    assert f"{settings.base_url}/archive/{first.slug}\n" in text
    assert file_slug(copy) not in html + text
    app = create_app(settings, preview=True, public=True)
    with TestClient(app) as client:
        old = client.get("/archive/2026-12-01 Café été", follow_redirects=False)  # pre-0006
        assert old.status_code == 301 and old.headers["location"] == f"/archive/{first.slug}"
        page = client.get(f"/archive/{first.slug}")
        assert page.status_code == 200 and "Bramforde" in page.text  # the newer copy
        listing = client.get("/archive").text
        assert listing.count('class="subject" href="/archive/') == 1
        index = client.get("/").text  # the editors' preview links to URL-safe names
        for path in (original, copy):
            assert f'href="/issues/{file_slug(path)}"' in index
            assert client.get(f"/issues/{file_slug(path)}").status_code == 200
        assert " " not in "".join(part.split('"')[0] for part in index.split('href="')[1:])
    engine.dispose()


class _Clock:
    def __init__(self) -> None:
        self.t = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def now(self) -> dt.datetime:
        return self.t

    def sleep(self, seconds: float, stop) -> bool:  # noqa: ANN001
        self.t += dt.timedelta(seconds=seconds)
        return stop.is_set()


def test_schedules_follow_the_same_rule(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    engine = seed(settings, 3)
    clock = _Clock()
    at = (clock.now() + dt.timedelta(minutes=5)).isoformat()
    original = _issue(settings, "2026-12-01.md")
    copy = _issue(settings, "2026-12-01 copy.md")
    planned = schedules.schedule_issue(engine, settings, original, "daily", at=at, clock=clock)
    with pytest.raises(NewsletterError, match=rf"already scheduled for list 'daily' by "
                                              rf"schedule {planned.schedule.id} \(issues/"):
        schedules.schedule_issue(engine, settings, copy, "daily", at=at, clock=clock)
    # the copy goes out by hand meanwhile: the worker does not send the issue again
    sent = _send(engine, settings, copy)
    clock.t += dt.timedelta(minutes=6)
    worker = WorkerProcess(engine, settings, clock=clock, retry_delay=0.01)
    assert worker.register()
    worker.tick()
    worker.wait_idle(timeout=60)
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "failed" and info.send_id is None
    assert info.note.count("\n") == 0 and f"by send {sent.id} (" in info.note
    assert "2026-12-01 copy.md, the same date and subject" in info.note
    assert _outbox(settings) == 3
    with pytest.raises(NewsletterError, match=rf"by send {sent.id} .*--again"):
        schedules.schedule_issue(engine, settings, original, "daily", clock=clock,
                                 at=(clock.now() + dt.timedelta(minutes=5)).isoformat())
    worker.shutdown()
    engine.dispose()


def test_migration_backfills_identity_and_makes_old_slugs_url_safe(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    path = _issue(settings, "2026-12-01 copy.md")
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0005_snapshot_in_chunks")
    now = dt.datetime(2026, 12, 1, 6)
    row = dict(kind="real", subject="Can the river towns rebuild before spring?",
               list_name="daily", backend="outbox", status="finished", html="h", text="t",
               total=0, created_at=now)
    with engine.begin() as conn:
        conn.execute(ledger.sends.insert(), [
            {**row, "issue_path": str(path), "issue_slug": "2026-12-01 copy"},
            {**row, "issue_path": "gone/2026-11-30.md", "issue_slug": "2026-11-30"},
            {**row, "issue_path": "gone/notes.md", "issue_slug": "notes"},
        ])
        conn.execute(archive.archive_issues.insert().values(
            slug="2026-12-01 copy", issue_date=dt.date(2026, 12, 1), subject=row["subject"],
            html="<p>web copy</p>", text="web copy", published_at=now, updated_at=now))
    command.upgrade(alembic_config(engine), "heads")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ledger.sends).order_by(ledger.sends.c.id)).all()
    from newsletter.authoring.identity import issue_key, of_issue

    expected = of_issue(build_file(path, settings, render_html=False).issue)
    assert rows[0].issue_slug == file_slug(path) and rows[0].issue_key == expected.issue_key
    assert rows[0].content_hash == expected.content_hash
    assert rows[1].issue_key == issue_key(dt.date(2026, 11, 30), row["subject"])
    assert rows[1].content_hash is None and rows[1].issue_slug == "2026-11-30"
    assert rows[2].issue_key is None  # no file, no date: matched by its slug, as before
    assert [e.slug for e in archive.entries(engine)] == [file_slug(path)]
    assert archive.resolve(engine, "2026-12-01 copy") == file_slug(path)
    engine.dispose()
