"""The outbox backend: one .eml per recipient, atomic, a resend overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.audience import tokens
from newsletter.delivery.backends import get_backend
from newsletter.delivery.backends.base import BackendUnavailable, Status
from newsletter.delivery.backends.outbox import OutboxBackend
from newsletter.delivery.personalize import Recipient
from tests.delivery_helpers import make_template, parse, recipients, send_settings


def test_writes_one_parseable_eml_per_recipient(project: Path) -> None:
    template = make_template(project, send_id=9, list_id=4)
    settings = send_settings(project)
    backend = get_backend(settings)
    assert backend.name == "outbox"
    messages = template.messages(recipients(25))
    with backend:
        results = backend.send_batch(messages)
    assert [r.status for r in results] == [Status.SENT] * 25
    # in the order of the messages: each result names its own file
    assert [Path(r.provider_id).name for r in results] == [f"9-{n}.eml" for n in range(1, 26)]
    files = sorted((project / "outbox").glob("*.eml"))
    assert len(files) == 25
    assert not list((project / "outbox").glob(".tmp-*"))
    first = parse((project / "outbox" / "9-1.eml").read_bytes())
    assert first["To"] == "Reader 1 <user1@example.com>"
    token = first["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    assert tokens.verify(token, settings, list_id=4).subscriber_id == 1
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert results[0].provider_id == str(project / "outbox" / "9-1.eml")


def test_a_resend_overwrites_instead_of_duplicating(project: Path) -> None:
    template = make_template(project, send_id="s1")
    backend = OutboxBackend(project / "outbox")
    backend.open()
    backend.send_batch(template.messages(recipients(3)))
    backend.send_batch(template.messages(recipients(3)))
    backend.send_batch([template.message(Recipient(None, "Me@Example.com"))])
    backend.send_batch([template.message(Recipient(None, "me@example.com"))])
    names = sorted(p.name for p in (project / "outbox").glob("*.eml"))
    assert len(names) == 4
    assert [n for n in names if "test-" in n] and all(n.startswith("s1-") for n in names)


def test_unwritable_folder(project: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BackendUnavailable, match="cannot create the outbox folder"):
        OutboxBackend(blocker / "outbox").open()


def test_write_error_is_a_temporary_failure(project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    backend = OutboxBackend(folder)
    backend.open()
    folder.rmdir()
    folder.write_text("now a file")  # the folder vanished under us
    results = backend.send_batch(make_template(project).messages(recipients(2)))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert "cannot write" in results[0].reason


def test_get_backend_refuses_unknown_names_and_bad_worker_counts(project: Path) -> None:
    from newsletter.errors import ConfigError

    settings = send_settings(project)
    with pytest.raises(ConfigError, match="unknown backend 'pigeon'"):
        get_backend(settings, "pigeon")
    with pytest.raises(ConfigError, match="at least 1"):
        get_backend(settings, workers=0)
    assert get_backend(settings, workers=3).concurrency == 3
