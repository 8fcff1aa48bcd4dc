"""Every `from newsletter... import ...` in benchmarks/ names something that exists.

The benchmarks are not run by the suite (they take minutes), and many run their measured
part in a child process from code held in a string, so a moved module breaks them
silently (the regroup left bench_import.py importing `open_store` from a package that no
longer has it). This reads each script as text, strings included, and imports each name.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
FROM_IMPORT = re.compile(
    r"^\s*from (newsletter(?:\.\w+)*) import \(?([\w ,]+?)\)?\s*(?:#.*)?$", re.M)
IMPORT = re.compile(r"^\s*import (newsletter(?:\.\w+)*)(?: as \w+)?\s*(?:#.*)?$", re.M)


def _imports() -> list[tuple[str, str, str | None]]:
    found: list[tuple[str, str, str | None]] = []
    for script in sorted(BENCH.glob("*.py")):
        text = script.read_text(encoding="utf-8")
        for module, names in FROM_IMPORT.findall(text):
            for name in names.split(","):
                name = name.strip().split(" as ")[0].strip()
                if name:
                    found.append((script.name, module, name))
        found.extend((script.name, module, None) for module in IMPORT.findall(text))
    return found


def test_the_scan_finds_the_benchmarks_imports() -> None:
    scripts = {script for script, _, _ in _imports()}
    assert {"bench_import.py", "bench_send.py", "bench_clicks.py"} <= scripts


@pytest.mark.parametrize(("script", "module", "name"), _imports(),
                         ids=lambda value: str(value))
def test_benchmark_import_exists(script: str, module: str, name: str | None) -> None:
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError:
        pytest.fail(f"benchmarks/{script}: no module {module}; import it from where it lives now")
    if name is not None and not hasattr(loaded, name):
        try:
            importlib.import_module(f"{module}.{name}")
        except ModuleNotFoundError:
            pytest.fail(f"benchmarks/{script}: {module} has no {name}; "
                        "import it from where it lives now")
