"""The demo: a whole newsletter job on the embedded defaults, no account needed.

``run_demo(folder)`` creates a demo project (if the folder has none), validates its
sample issues and renders the newest one to ``out/``. Each later capability adds
its step here (subscribers, sending through the outbox), so that the README's first
command shows the product end to end.
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
    from .importer import import_demo_subscribers

    summary["subscribers"] = import_demo_subscribers(settings, echo).as_dict()
    return summary
