"""Charts of the report pages: server-side SVG drawn by pygal, readable in dark mode.

Every colour of text and axes is ``currentColor``, so a chart takes the page's text
colour (dark on light, light on dark); the backgrounds are transparent and the series
colours are mid-tones that read on both. No script: pygal's tooltip configuration is
removed, so the SVG is inert (the pages' Content-Security-Policy allows no script).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygal
from markupsafe import Markup
from pygal.style import Style

SERIES = ("#3b82f6", "#f59e0b", "#a855f7", "#10b981")
STYLE = Style(
    background="transparent", plot_background="transparent",
    foreground="currentColor", foreground_strong="currentColor",
    foreground_subtle="rgba(127,127,127,0.35)", opacity="0.9", opacity_hover="1",
    colors=SERIES, font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    label_font_size=12, major_label_font_size=12, legend_font_size=13, title_font_size=15,
    value_font_size=12,
)
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)


def _svg(chart: pygal.graph.graph.Graph, label: str) -> Markup:
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(label)}" ', 1)
    return Markup(svg)


def _options(title: str, height: int = 320) -> dict[str, object]:
    return {"style": STYLE, "js": [], "disable_xml_declaration": True, "title": title,
            "width": 760, "height": height, "legend_at_bottom": True, "print_zeroes": False}


def bars(title: str, labels: Sequence[str], series: dict[str, Sequence[int]], *,
         horizontal: bool = False, stacked: bool = False, every: int = 1) -> Markup:
    """Bars per label (one colour per series); ``horizontal`` for long labels; ``every``:
    only every that many labels written (hours, days)."""
    kind = (pygal.HorizontalStackedBar if stacked else pygal.HorizontalBar) if horizontal \
        else (pygal.StackedBar if stacked else pygal.Bar)
    chart = kind(**_options(title, max(240, 34 * len(labels) + 120) if horizontal else 320),
                 truncate_label=60 if horizontal else 8, x_labels_major_every=every,
                 show_minor_x_labels=every == 1)
    chart.x_labels = list(labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _svg(chart, title)


def lines(title: str, labels: Sequence[str], series: dict[str, Sequence[int]]) -> Markup:
    chart = pygal.Line(**_options(title), x_label_rotation=0, show_minor_x_labels=False,
                       x_labels_major_every=max(1, len(labels) // 6), dots_size=2)
    chart.x_labels = list(labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _svg(chart, title)
