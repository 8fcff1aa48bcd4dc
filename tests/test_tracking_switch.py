"""The per-list tracking switch at send level: a list named in ``untracked_lists`` gets
its messages with the original links and no open pixel; another list of the same
project, the same issue, gets tracked links and the pixel; the archive copy never has
either. Real SMTP sends (the local aiosmtpd server), what each reader received."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import sqlalchemy as sa

from newsletter.db.tables import archive_issues
from newsletter.delivery import sending
from newsletter.feedback import clicks
from newsletter.web import create_app

from .sendtools import make_project, seed
from .smtpserver import SMTPTestServer
from .test_clicks_e2e import LINKED, linked_issue

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

CLICK = re.compile(r"https://sendtest\.news/c/[A-Za-z0-9_-]+\.[0-9]+")
PIXEL = re.compile(r'<img src="https://sendtest\.news/o/[A-Za-z0-9_-]+"')


def _parts(message) -> tuple[str, str]:  # noqa: ANN001
    return (message.get_body(("plain",)).get_content(),
            message.get_body(("html",)).get_content())


def test_a_list_in_untracked_lists_gets_plain_links_the_other_tracked_ones(
        tmp_path: Path) -> None:
    with SMTPTestServer() as smtp:
        settings = make_project(tmp_path / "p").model_copy(update={
            "smtp_url": smtp.url, "track_opens": True, "untracked_lists": ["newsroom"]})
        engine = seed(settings, 3, "daily")  # r1..r3
        seed(settings, 3, "newsroom", domain="newsroom.example.com").dispose()  # r4..r6
        path = linked_issue(settings.project_dir)
        prepared = sending.preflight(settings, path)
        send_ids = {}
        for list_name in ("daily", "newsroom"):
            started = sending.start(engine, settings, prepared, list_name, backend="smtp")
            result = sending.run(engine, settings, started.send.id, backend="smtp")
            assert result.counts == {"sent": 3}
            send_ids[list_name] = started.send.id
        tracked = {n: _parts(smtp.parsed(f"r{n}@example.com")[0]) for n in (1, 2, 3)}
        untracked = {n: _parts(smtp.parsed(f"r{n}@newsroom.example.com")[0])
                     for n in (4, 5, 6)}

    urls = [re.search(r"\]\((\S+?)\)", new).group(1) for new in LINKED.values()]
    for text, html in untracked.values():
        assert not CLICK.search(html) and not CLICK.search(text)
        assert "/c/" not in html and "/c/" not in text
        assert not PIXEL.search(html) and "sendtest.news/o/" not in html
        for url in urls:  # the links as the editor wrote them
            assert f'href="{url}"' in html and url in text
        assert "/u/" in html  # unsubscribe links are never switched off
    assert clicks.links(engine, send_ids["newsroom"]) == []  # nothing stored to resolve
    for text, html in tracked.values():
        assert len(CLICK.findall(html)) == len(clicks.links(engine, send_ids["daily"]))
        assert CLICK.search(text)
        assert len(PIXEL.findall(html)) == 1
        for url in urls:
            assert f'href="{url}"' not in html

    # the archive copy: stored and served, without tracked links or the pixel
    with engine.connect() as conn:
        stored = conn.execute(sa.select(archive_issues.c.slug, archive_issues.c.html,
                                        archive_issues.c.text)).all()
    assert stored
    app = create_app(settings, preview=False, public=True)
    with TestClient(app, base_url="https://sendtest.news") as client:
        for slug, html, text in stored:
            page = client.get(f"/archive/{slug}")
            assert page.status_code == 200
            for copy in (html, text, page.text):
                assert "/c/" not in copy and "sendtest.news/o/" not in copy
            assert all(url in page.text for url in urls)
    engine.dispose()
