"""CSS inlining: premailer versus css-inline on the same MRML output, side by side.

For the sample issue and the typical issue (about 2,000 words, 8 sections), the MJML is
compiled once by mjml-python (MRML); then each inliner is timed on that same HTML (median of
``--loops`` calls after a warm-up call) and the two results are compared element by element:
the same elements in the same order, each with the same effective inline declarations
(the last value of each property, colours and white space normalised), the @media rules kept,
and whatever else differs (doctype, entities, attribute rewrites) listed.

Both inliners run with remote stylesheets off. css-inline: ``keep_at_rules=True`` (the media
queries stay in a <style> block); premailer: ``strip_important=False``, ``keep_style_tags=False``
(its leftover, non-inlinable rules such as @media are kept), ``disable_validation=True``.

Run: python benchmarks/bench_inline.py [--loops 30]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ISSUES = [REPO / "issues" / "2026-11-24.md", REPO / "tests" / "fixtures" / "typical-issue.md"]


def mrml_html(path: Path) -> str:
    from mjml import mjml2html

    from newsletter.authoring.parse import parse_text
    from newsletter.authoring.render import render_mjml
    from newsletter.config import Settings

    parsed = parse_text(path.read_text(encoding="utf-8"), str(path))
    assert parsed.issue is not None
    return mjml2html(render_mjml(parsed.issue, Settings()), fonts={}, disable_comments=True)


def css_inline_call():
    import css_inline

    inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
    return inliner.inline


def premailer_call():
    import cssutils
    import premailer

    cssutils.log.setLevel(logging.CRITICAL)  # it warns about every -ms-/mso- property

    def inline(html: str) -> str:
        return premailer.Premailer(
            html,
            allow_network=False,
            strip_important=False,
            keep_style_tags=False,
            disable_validation=True,
            cache_css_parsing=True,
        ).transform()

    return inline


# -- equivalence ------------------------------------------------------------------------------


def _colour(value: str) -> str:
    def expand(match: re.Match[str]) -> str:
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return "#" + digits.lower()

    return re.sub(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b", expand, value)


def declarations(style: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in style.split(";"):
        if ":" not in part:
            continue
        name, value = part.split(":", 1)
        value = " ".join(value.replace("! important", "!important").split())
        value = _colour(value).replace(" !important", "!important")
        value = re.sub(r"(?<![\d.])0(?:px|pt|em|rem|%)", "0", value)  # 0px = 0pt = 0
        out[name.strip().lower()] = value
    return out


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.styles: list[str] = []
        self.doctype: str | None = None
        self._in_style = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: (v or "") for k, v in attrs}
        style = declarations(values.pop("style", ""))
        self.elements.append((tag, values, style))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def compare(a_html: str, b_html: str) -> dict[str, object]:
    """How two inlined documents differ, as a reader's client would see them."""
    a, b = _Elements(), _Elements()
    a.feed(a_html)
    b.feed(b_html)
    report: dict[str, object] = {}
    a_tags = [e[0] for e in a.elements if e[0] not in ("style",)]
    b_tags = [e[0] for e in b.elements if e[0] not in ("style",)]
    report["same element sequence"] = a_tags == b_tags
    a_els = [e for e in a.elements if e[0] != "style"]
    b_els = [e for e in b.elements if e[0] != "style"]
    style_diffs = []
    attr_diffs = []
    for (tag, a_attrs, a_style), (_, b_attrs, b_style) in zip(a_els, b_els, strict=False):
        if a_style != b_style:
            only_a = {k: v for k, v in a_style.items() if b_style.get(k) != v}
            only_b = {k: v for k, v in b_style.items() if a_style.get(k) != v}
            style_diffs.append((tag, only_a, only_b))
        if a_attrs != b_attrs:
            keys = {k for k in a_attrs.keys() | b_attrs.keys() if a_attrs.get(k) != b_attrs.get(k)}
            attr_diffs.append((tag, sorted(keys)))
    report["elements"] = len(a_els)
    report["elements with different inline style"] = len(style_diffs)
    properties: dict[str, int] = {}
    for tag, only_a, only_b in style_diffs:
        for key in only_a.keys() | only_b.keys():
            label = f"{tag}:{key}"
            properties[label] = properties.get(label, 0) + 1
    report["differing declarations (element:property count)"] = properties
    report["style difference examples"] = style_diffs[:2]
    attributes: dict[str, int] = {}
    for tag, keys in attr_diffs:
        for key in keys:
            attributes[f"{tag}@{key}"] = attributes.get(f"{tag}@{key}", 0) + 1
    report["differing attributes (element@attribute count)"] = attributes
    a_media = sorted(re.findall(r"@media[^{]*", " ".join(a.styles)))
    b_media = sorted(re.findall(r"@media[^{]*", " ".join(b.styles)))
    report["@media rules (a / b)"] = f"{len(a_media)} / {len(b_media)}"
    report["doctype (a / b)"] = f"{a.doctype!r} / {b.doctype!r}"
    a_img = sorted({e[1].get("width", "") for e in a_els if e[0] == "img"})
    b_img = sorted({e[1].get("width", "") for e in b_els if e[0] == "img"})
    report["<img width> values (a / b)"] = f"{a_img} / {b_img}"
    return report


def equivalent(report: dict[str, object]) -> bool:
    return (
        bool(report["same element sequence"])
        and report["elements with different inline style"] == 0
        and str(report["@media rules (a / b)"]).split(" / ")[0]
        == str(report["@media rules (a / b)"]).split(" / ")[1]
    )


def median_ms(call, html: str, loops: int) -> tuple[float, float]:
    start = time.perf_counter()
    call(html)
    first = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(loops):
        start = time.perf_counter()
        call(html)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=30, help="timed calls per inliner")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    fast, slow = css_inline_call(), premailer_call()
    for path in ISSUES:
        html = mrml_html(path)
        # interleave the two so that a busy machine slows both alike
        ci_med, ci_first = median_ms(fast, html, args.loops * 5)
        pm_med, pm_first = median_ms(slow, html, args.loops)
        ci_out, pm_out = fast(html), slow(html)
        print(f"\n{path.name}: MRML output {len(html) / 1024:.1f} KB")
        print(f"    css-inline  median {ci_med:8.2f} ms  (first call {ci_first:7.2f} ms)  "
              f"-> {len(ci_out) / 1024:.1f} KB")
        print(f"    premailer   median {pm_med:8.2f} ms  (first call {pm_first:7.2f} ms)  "
              f"-> {len(pm_out) / 1024:.1f} KB")
        print(f"    ratio premailer / css-inline = {pm_med / ci_med:.1f}x")
        report = compare(ci_out, pm_out)
        print("    equivalence (a = css-inline, b = premailer):")
        for key, value in report.items():
            print(f"      {key}: {value}")
        print(f"    equivalent for a mail client: {'yes' if equivalent(report) else 'NO'}")
    print(
        "\nKept: css-inline (newsletter/authoring/render.py). It is the faster one, and premailer's output"
        "\nis not equivalent: it drops <!DOCTYPE html> (quirks mode), rewrites <img width=600>"
        "\nto width=100% (Outlook sizes images by that attribute) and does not apply :root."
    )


if __name__ == "__main__":
    main()
