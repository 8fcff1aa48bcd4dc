"""Many small, valid issue files, for the preview index at scale (tests and benchmarks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

FIRST_DAY = dt.date(2026, 11, 23)  # the day before the sample issues; older ones go back


def write_many_issues(folder: Path, count: int) -> list[str]:
    """Write ``count`` issues, one per day going back from FIRST_DAY; their names."""
    names = []
    for number in range(count):
        day = FIRST_DAY - dt.timedelta(days=number)
        names.append(day.isoformat())
        (folder / f"{day.isoformat()}.md").write_text(
            f"---\nsubject: Briefing number {number}: the council votes\n"
            f"preheader: Plus the weather and the markets, day {number}\n"
            f"date: {day.isoformat()}\n---\n\n"
            f"# Lead: The council votes on the harbour, day {number}\n\n"
            "The council meets tonight to decide whether the harbour gets its new quay. "
            "Traders say the delay has cost them a season; residents worry about traffic.\n\n"
            f"# Story: Rail fares fall for the {number}th time\n\n"
            "Fares on the coastal line fall again next month, the operator said, as more "
            "people take the train to work.\n\n"
            "# What We're Watching: The weather\n\n## Rain\n\nRain in the morning, clearing by noon.\n",
            encoding="utf-8",
        )
    return names
