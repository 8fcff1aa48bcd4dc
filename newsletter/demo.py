"""The demo: a whole newsletter job on the embedded defaults, no account needed.

``run_demo(folder)`` creates a demo project (if the folder has none), validates its
sample issues, renders the newest one to ``out/``, imports demo subscribers into the
project's SQLite database and sends the newest issue to them through the outbox backend
(``.eml`` files in ``outbox/``), so that the README's first command shows the product
end to end. Running it again changes nothing: the send is not repeated.

The demo touches only demo projects: its ``newsletter.toml`` says ``demo = true`` (which
also lets it keep ``init``'s example addresses, as it sends only to the outbox), and a
folder that holds anything else (a real project, other files) is refused untouched. It
always uses the project's own SQLite database, whatever NEWSLETTER_DATABASE_URL says.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from .authoring.build import build_file
from .authoring.project import init_project, issue_files
from .config import CONFIG_NAME, load_settings
from .errors import NewsletterError

DEMO_MARK = ("# made by `newsletter demo`: example addresses allowed, sent only to the outbox\n"
             "demo = true\n")


def is_demo_project(folder: Path) -> bool:
    """True when ``folder``'s newsletter.toml (the file itself) says ``demo = true``."""
    try:
        data = tomllib.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return data.get("demo") is True


def _demo_project(folder: Path, echo: Callable[[str], None]) -> None:
    """Create the demo project, or check that ``folder`` is one; refuse anything else."""
    if (folder / CONFIG_NAME).exists():
        if not is_demo_project(folder):
            raise NewsletterError(
                f"{folder}: is a newsletter project not made by `newsletter demo` (its "
                f"{CONFIG_NAME} has no `demo = true`); the demo changes nothing there: "
                "give it a new folder, e.g. `newsletter demo demo-newsletter`")
        return
    if folder.exists() and any(folder.iterdir()):
        raise NewsletterError(
            f"{folder}: exists and is not a demo project (it has files but no "
            f"{CONFIG_NAME}); the demo changes nothing there: give it a new or empty folder")
    config = init_project(folder, name="The Demo Briefing")
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("\nname = ", f"\n{DEMO_MARK}name = ", 1), encoding="utf-8")
    echo(f"created demo project {folder}/")


def run_demo(folder: Path, echo: Callable[[str], None] = print) -> dict:
    folder = Path(folder)
    _demo_project(folder, echo)
    settings = load_settings(folder, database_url=None)  # never NEWSLETTER_DATABASE_URL's
    files = issue_files(settings)
    if not files:
        raise NewsletterError(f"{settings.issues_path}: no issue files to demonstrate")
    summary: dict = {"project": str(folder), "issues": []}
    for path in files:
        result = build_file(path, settings)
        state = "valid" if result.ok else f"{len(result.errors)} errors"
        echo(f"validated issues/{path.name}: {state}, {len(result.warnings)} warnings")
        for finding in result.findings:
            echo("  " + finding.format())
        summary["issues"].append({"path": str(path), "ok": result.ok})
    newest = build_file(files[0], settings)
    if newest.rendered is None:
        raise NewsletterError(f"{files[0]}: has errors; fix them and run the demo again")
    out = folder / "out"
    out.mkdir(exist_ok=True)
    html_path = out / f"{files[0].stem}.html"
    text_path = out / f"{files[0].stem}.txt"
    html_path.write_text(newest.rendered.html, encoding="utf-8")
    text_path.write_text(newest.rendered.text, encoding="utf-8")
    echo(f"rendered {html_path} ({newest.rendered.size / 1024:.1f} KB) and {text_path}")
    summary["html"] = str(html_path)
    summary["text"] = str(text_path)
    from .audience.importer import DEMO_LIST, import_demo_subscribers

    summary["subscribers"] = import_demo_subscribers(settings, echo).as_dict()
    summary["send"] = _send_demo(settings, files[0], DEMO_LIST, folder, echo)
    echo(f"next: newsletter --project {folder} preview   (a live preview in your browser)")
    return summary


def _send_demo(
    settings, issue: Path, list_name: str, folder: Path, echo: Callable[[str], None]
) -> dict:
    """Send the newest issue to the demo list through the outbox backend (once)."""
    from .audience.lists import get_list
    from .db.connect import open_store
    from .delivery import ledger, sending

    engine = open_store(settings)
    try:
        prepared = sending.preflight(settings, issue, backend="outbox")
        latest = ledger.find_latest(engine, prepared.slug, get_list(engine, list_name).id,
                                    prepared.identity)
        if latest is not None and latest.status == "finished":
            send = latest
            echo(f"already sent {issue.name} to list {list_name!r} (send {send.id})")
        else:
            started = sending.start(engine, settings, prepared, list_name, backend="outbox")
            send = sending.run(engine, settings, started.send.id, backend="outbox")
            echo(
                f"sent {issue.name} to list {list_name!r} through the outbox: "
                f"{send.counts.get('sent', 0)} messages in {settings.outbox_path}/"
                f" (send {send.id}; `newsletter --project {folder} sends show {send.id}`"
                f")"
            )
    finally:
        engine.dispose()
    return {"id": send.id, "counts": send.counts}
