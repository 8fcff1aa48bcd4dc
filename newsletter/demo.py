"""The demo: a whole newsletter job on the embedded defaults, no account needed.

``run_demo(folder)`` creates a demo project (if the folder has none), validates its
sample issues, renders the newest one to ``out/``, imports demo subscribers into the
project's SQLite database and sends the newest issue to them through the outbox backend
(``.eml`` files in ``outbox/``), so that the README's first command shows the product
end to end. Running it again changes nothing: the send is not repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .build import build_file
from .config import CONFIG_NAME, load_settings
from .errors import NewsletterError
from .project import init_project, issue_files


def run_demo(folder: Path, echo: Callable[[str], None] = print) -> dict:
    folder = Path(folder)
    if not (folder / CONFIG_NAME).exists():
        init_project(folder, name="The Demo Briefing")
        echo(f"created demo project {folder}/")
    settings = load_settings(folder)
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
    from .importer import DEMO_LIST, import_demo_subscribers

    summary["subscribers"] = import_demo_subscribers(settings, echo).as_dict()
    summary["send"] = _send_demo(settings, files[0], DEMO_LIST, folder, echo)
    echo(f"next: newsletter --project {folder} preview   (a live preview in your browser)")
    return summary


def _send_demo(
    settings, issue: Path, list_name: str, folder: Path, echo: Callable[[str], None]
) -> dict:
    """Send the newest issue to the demo list through the outbox backend (once)."""
    from . import ledger, sending
    from .store import get_list, open_store

    engine = open_store(settings)
    try:
        prepared = sending.preflight(settings, issue)
        latest = ledger.find_latest(engine, prepared.slug, get_list(engine, list_name).id)
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
