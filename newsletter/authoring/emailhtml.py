"""MJML in, the HTML that is sent out: the client-compatibility steps around mjml-python.

Before compiling, ``px_units`` writes ``px`` after every bare number in a padding
attribute: mjml-python (MRML 6.0.1) drops a whole padding shorthand from its width maths
when one value has no unit, so ``padding="28px 28px 0"`` gave a rule's Outlook table
600 px inside a 544 px cell (MJML JS: 544 px). Templates should write units; this keeps a
project's own templates right too.

After compiling, ``finish`` inlines the CSS (css-inline) and then repairs what inlining
does to the head:

- css-inline puts its ``<style>`` block first in ``<head>``; the charset declaration must
  come within the first 1,024 bytes, so the Content-Type meta, viewport and X-UA metas
  and the title are put back at the start of ``<head>``, in that order.
- css-inline drops rules that match nothing in the document: MRML's ``#outlook a``
  (Outlook.com's link padding) and the Thunderbird ``.moz-text-html`` column widths (a
  ``<style media=...>`` block). They are kept, in a block after the inlined one.
- the hidden preheader gets ``mso-hide:all`` (Outlook for Windows ignores
  ``display:none`` on a ``div``); not ``visibility``, which Gmail rejects.
"""

from __future__ import annotations

import re

import css_inline

# padding, padding-top..left, inner-padding (mj-button), on any tag
_PADDING_ATTR = re.compile(
    r"""(?<![\w-])((?:inner-)?padding(?:-(?:top|right|bottom|left))?\s*=\s*)(["'])(.*?)\2""",
    re.DOTALL,
)
_BARE_NUMBER = re.compile(r"(?<![\w.#%{-])(\d+(?:\.\d+)?|\.\d+)(?![\w.%])")
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
_MEDIA_STYLE = re.compile(r"<style\b[^>]*\bmedia=[^>]*>.*?</style>", re.DOTALL | re.IGNORECASE)
_OUTLOOK_A = re.compile(r"#outlook a\s*\{[^}]*\}")
_HEAD = re.compile(r"<head>(.*?)</head>", re.DOTALL | re.IGNORECASE)
_HEAD_FIRST = (  # what goes first in <head>, in this order
    re.compile(r"<meta http-equiv=\"Content-Type\"[^>]*>", re.IGNORECASE),
    re.compile(r"<!--\[if !mso\]><!--><meta http-equiv=\"X-UA-Compatible\"[^>]*>"
               r"<!--<!\[endif\]-->", re.IGNORECASE),
    re.compile(r"<meta name=\"viewport\"[^>]*>", re.IGNORECASE),
    re.compile(r"<title>.*?</title>", re.DOTALL | re.IGNORECASE),
)
_PREHEADER = re.compile(r"(<body\b[^>]*>\s*<div style=\"display:none;)([^\"]*)\"")
CHARSET_WITHIN = 1024  # bytes a browser scans for the charset declaration


def px_units(mjml: str) -> str:
    """``mjml`` with ``px`` after each bare number of its padding attributes
    (``28px 28px 0`` -> ``28px 28px 0px``); Jinja leftovers and other units untouched."""

    def attribute(match: re.Match[str]) -> str:
        name, quote, value = match.groups()
        return name + quote + _BARE_NUMBER.sub(_with_px, value) + quote

    return _PADDING_ATTR.sub(attribute, mjml)


def _with_px(match: re.Match[str]) -> str:
    return match.group(1) + "px"


def unitless_paddings(mjml: str) -> list[str]:
    """The padding attributes of ``mjml`` that have a bare number (for tests and checks)."""
    return [m.group(0) for m in _PADDING_ATTR.finditer(mjml) if _BARE_NUMBER.search(m.group(3))]


def finish(html: str) -> str:
    """mjml-python's output -> the HTML to send (see the module's docstring)."""
    kept = _MEDIA_STYLE.findall(html)
    html = _MEDIA_STYLE.sub("", html)
    outlook = _OUTLOOK_A.search(html)
    inlined = _INLINER.inline(html)
    extra = ([f'<style type="text/css">{outlook.group(0)}</style>'] if outlook else []) + kept
    inlined = _reorder_head(inlined, "".join(extra))
    return _PREHEADER.sub(_hide_preheader, inlined, count=1)


def _reorder_head(html: str, extra: str) -> str:
    match = _HEAD.search(html)
    if match is None:
        return html
    rest = match.group(1)
    first: list[str] = []
    for pattern in _HEAD_FIRST:
        found = pattern.search(rest)
        if found:
            first.append(found.group(0))
            rest = rest[: found.start()] + rest[found.end() :]
    head = "".join(first) + rest.strip() + extra
    return f"{html[: match.start()]}<head>{head}</head>{html[match.end() :]}"


def _hide_preheader(match: re.Match[str]) -> str:
    style = match.group(2)
    if "mso-hide:all" not in style:
        style += "mso-hide:all;"
    return f'{match.group(1)}{style}"'
