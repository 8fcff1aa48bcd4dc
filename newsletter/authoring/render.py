"""Issue + Settings -> Rendered(html, text).

Jinja2 templates produce MJML, mjml-python compiles it, css-inline inlines the CSS
(at-rules such as the dark-mode and phone media queries stay in a <style> block).
The same input always gives byte-identical output.

When ``personal=True`` the output carries merge marks that ``personalize`` fills per
recipient (``UNSUBSCRIBE_MARK``, ``PREFERENCES_MARK``, ``{{name|fallback}}``); otherwise it is the generic
web copy (preview, archive, ``newsletter render``) with no personal links.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from pathlib import Path
from types import SimpleNamespace

import jinja2
from markupsafe import Markup
from mjml import mjml2html

from ..config import Settings
from ..errors import RenderError
from .emailhtml import finish, px_units
from .media import email_issue, email_sizes, size_attributes
from .model import (
    BulletList,
    Emphasis,
    Inline,
    Issue,
    LineBreak,
    Link,
    Paragraph,
    Section,
    SectionKind,
    Strong,
    Text,
)
from .text import render_text
from .themes import theme_brand, theme_dirs

UNSUBSCRIBE_MARK = "%%unsubscribe_url%%"
PREFERENCES_MARK = "%%preferences_url%%"  # the preference centre, /p/TOKEN
# {{name}} or {{name|fallback}}; group 1 is the fallback without its outer blanks. The
# possessive repeats never give back what they took, so an unclosed '{{name|' before a long
# run of blanks costs one pass, not one per blank (was quadratic: 11 s on 100,000 tabs).
NAME_FIELD = re.compile(r"\{\{\s*+name\s*+(?:\|\s*+((?:[^{}\s]++|\s++(?=[^{}\s]))*+)\s*+)?\}\}")
PREHEADER_PADDING = "&#847;&zwnj;&nbsp;" * 60
BUILTIN_TEMPLATES = next(
    (
        p
        for p in (
            Path(__file__).parent.parent / "_templates",  # installed wheel
            Path(__file__).parent.parent.parent / "templates",  # source checkout
        )
        if p.is_dir()
    ),
    Path(__file__).parent.parent.parent / "templates",
)
_TEMPLATE_FOR = {
    SectionKind.LEAD: "story.mjml.j2",
    SectionKind.STORY: "story.mjml.j2",
    SectionKind.HARD_NUMBERS: "numbers.mjml.j2",
    SectionKind.WATCHING: "watching.mjml.j2",
    SectionKind.IGNORING: "watching.mjml.j2",
    SectionKind.QUOTE: "quote.mjml.j2",
    SectionKind.SPONSOR: "sponsor.mjml.j2",
}
# Every link of a Sponsor section carries these, so readers' tools and engagement counts
# can tell advertising from editorial links (rel="sponsored" is the web's own label).
SPONSOR_LINK = ' rel="sponsored noopener" data-section="sponsor"'
PHOTO_WIDTH = 544  # the photo slot: the 600 px body less 28 px either side


@dataclass(frozen=True)
class Rendered:
    html: str
    text: str
    subject: str
    preheader: str | None

    @property
    def size(self) -> int:
        """Bytes of the HTML part as sent (UTF-8)."""
        return len(self.html.encode("utf-8"))


# -- inline Markdown -> HTML ------------------------------------------------------------


def inline_html(nodes: list[Inline], link_attrs: str = "") -> str:
    """HTML of inline content; ``link_attrs`` (trusted markup) goes on every link."""
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(escape(node.text, quote=False))
        elif isinstance(node, LineBreak):
            out.append("<br>")
        elif isinstance(node, Strong):
            out.append(f"<strong>{inline_html(node.children, link_attrs)}</strong>")
        elif isinstance(node, Emphasis):
            out.append(f"<em>{inline_html(node.children, link_attrs)}</em>")
        elif isinstance(node, Link):
            out.append(
                f'<a href="{escape(node.href)}"{link_attrs}>'
                f"{inline_html(node.children, link_attrs)}</a>"
            )
    return "".join(out)


def blocks_html(blocks: list, link_attrs: str = "") -> Markup:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            out.append(f"<p>{inline_html(block.inlines, link_attrs)}</p>")
        elif isinstance(block, BulletList):
            tag = "ol" if block.ordered else "ul"
            items = "".join(f"<li>{inline_html(item, link_attrs)}</li>" for item in block.items)
            out.append(f"<{tag}>{items}</{tag}>")
    return Markup("\n".join(out))


# -- templates --------------------------------------------------------------------------


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs (a cold ``newsletter render`` compiles eight
    templates: about 15 ms); a cache that cannot be written is skipped.

    Entries are keyed by the template's name and source, not its path: every project
    with the same template shares one entry (so the cache stays a few dozen files however
    many projects there are), and an edited template gets a new one.
    """

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> jinja2.bccache.Bucket:
        checksum = self.get_source_checksum(source)
        # compiled code depends on the environment's options too (autoescape...): a change
        # of them, or of Jinja, must not reuse code compiled under the old ones
        key = self.get_cache_key(f"{_ENV_VERSION}|{jinja2.__version__}|{name}|{checksum}")
        bucket = jinja2.bccache.Bucket(environment, key, checksum)
        self.load_bytecode(bucket)
        return bucket

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def template_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/newsletter/templates`` (default ``~/.cache/newsletter/templates``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "newsletter" / "templates"


@lru_cache(maxsize=1)
def _bytecode_cache() -> jinja2.BytecodeCache | None:
    if os.environ.get("NEWSLETTER_TEMPLATE_CACHE", "1") in ("0", ""):
        return None
    folder = template_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return _TemplateCache(str(folder))


_ENV_VERSION = "3"  # bump when an option of the environment below changes


def _autoescape(name: str | None) -> bool:
    """HTML-escape values in the email templates, not in Markdown ones (new-issue.md.j2)."""
    return not (name or "").endswith(".md.j2")


def yaml_str(value: object) -> str:
    """A value for a YAML front-matter line: as is when YAML reads it back unchanged as a
    string, otherwise double-quoted (``Rates #1`` would lose ``#1`` to a comment)."""
    from .parse import yaml_loader

    yaml, loader = yaml_loader()
    text = " ".join(str(value).split())
    try:
        plain = yaml.load(f"v: {text}\n", Loader=loader) == {"v": text}
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)


@lru_cache(maxsize=8)
def _environment(
    user_dir: str | None, builtin: str, theme_dirs: tuple[str, ...] = ()
) -> jinja2.Environment:
    # the theme's own templates first (the project's copy, then the built-in one), then
    # the shared ones (the project's, then the built-in)
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(d) for d in theme_dirs]
    if user_dir:
        loaders.append(jinja2.FileSystemLoader(user_dir))
    loaders.append(jinja2.FileSystemLoader(builtin))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
        auto_reload=True,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["yaml_str"] = yaml_str
    return env


def environment(settings: Settings, *, themed: bool = False) -> jinja2.Environment:
    """The templates; ``themed`` adds the folders of the project's theme in front."""
    user = settings.templates_path
    folders = tuple(str(d) for d in theme_dirs(settings, BUILTIN_TEMPLATES)) if themed else ()
    return _environment(str(user) if user else None, str(BUILTIN_TEMPLATES), folders)


def _section_view(section: Section) -> SimpleNamespace:
    links = SPONSOR_LINK if section.kind is SectionKind.SPONSOR else ""
    read_more = section.read_more
    return SimpleNamespace(**{
        "kind": section.kind,
        "template": _TEMPLATE_FOR[section.kind],
        "css": section.kind.name.lower().replace("_", "-"),
        "label": section.label,
        "kicker": section.label or "",  # the name older templates use for the label
        "headline": section.headline,
        "anchor": section.anchor,
        "image": section.image,
        # the slot's width; media.size_attributes adds the height when the size is known
        "image_width": PHOTO_WIDTH,
        "body_html": blocks_html(section.blocks, links),
        "items": [
            SimpleNamespace(title=item.title, line=item.line, body_html=blocks_html(item.blocks))
            for item in section.items
        ],
        "read_more": read_more,
        # the link's accessible name: its own words and the headline, so that two "Read
        # more" links never sound the same (WCAG 2.4.4); it starts with the visible words
        "read_more_name": f"{read_more.label}: {section.headline}" if read_more else "",
        "link_attrs": Markup(links),
        "attribution": section.attribution,
    })


def _contents(issue: Issue, settings: Settings) -> list[SimpleNamespace]:
    """The "In this issue" list: each story's headline and anchor (quotes and sponsors are
    not stories), when the issue (or, by default, the project) asks for it."""
    wanted = settings.contents if issue.contents is None else issue.contents
    if not wanted:
        return []
    return [
        SimpleNamespace(anchor=s.anchor, headline=s.headline)
        for s in issue.sections
        if s.kind not in (SectionKind.QUOTE, SectionKind.SPONSOR) and s.headline
    ]


def format_date(issue: Issue) -> str:
    d = issue.date
    return f"{d:%A}, {d.day} {d:%B %Y}"


def _links(issue: Issue, settings: Settings, personal: bool) -> dict[str, str | None]:
    """The page links of the email: its web copy (the email's "View in browser"), the
    archive index (the web copy's "Read past issues") and the sign-up page."""
    base = settings.base_url
    archive = bool(base) and settings.archive
    archive_url = f"{base}/archive/{issue.slug}" if base else None
    return {
        "archive_url": archive_url,
        "view_url": archive_url if personal and archive else None,
        "archive_index_url": f"{base}/archive" if archive else None,
        "subscribe_url": f"{base}/subscribe" if base else None,
    }


def render_mjml(issue: Issue, settings: Settings, *, personal: bool = False) -> str:
    """The MJML document for an issue (step one of rendering)."""
    folders = theme_dirs(settings, BUILTIN_TEMPLATES)
    env = environment(settings, themed=True)
    issue = email_issue(settings, issue)  # local images -> their media URLs
    try:
        template = env.get_template("email.mjml.j2")
        return template.render(
            issue=issue,
            issue_date=format_date(issue),
            sections=[_section_view(s) for s in issue.sections],
            contents=_contents(issue, settings),
            brand=theme_brand(settings, folders),
            theme=settings.theme,
            settings=settings,
            preheader_padding=Markup(PREHEADER_PADDING),
            unsubscribe_url=UNSUBSCRIBE_MARK if personal else None,
            preferences_url=PREFERENCES_MARK if personal else None,
            **_links(issue, settings, personal),
        )
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(
            f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"template error: {exc}; check your templates/ folder") from None
    except Exception as exc:  # a user's template can fail in any way
        raise RenderError(
            f"template error: {type(exc).__name__}: {exc}; check your templates/ folder"
        ) from None


def compile_mjml(source: str) -> str:
    """MJML -> HTML with CSS inlined, made client-safe (``emailhtml``)."""
    try:
        html = mjml2html(px_units(source), fonts={}, disable_comments=True)
    except Exception as exc:  # mjml-python raises a bare ValueError-like error on bad MJML
        raise RenderError(f"MJML error: {exc}; check your templates") from None
    return finish(html)


def render(issue: Issue, settings: Settings, *, personal: bool = False) -> Rendered:
    """Render an issue to HTML and plain text, typeset for ``settings.lang``."""
    from .typography import typeset

    issue = typeset(issue, settings.lang)
    html = compile_mjml(render_mjml(issue, settings, personal=personal))
    html = size_attributes(html, email_sizes(settings, issue))  # <img height> when known
    text = render_text(issue, settings, personal=personal)
    if not personal:
        html = fill_name(html, None)
        text = fill_name(text, None)
    return Rendered(html=html, text=text, subject=issue.subject, preheader=issue.preheader)


def fill_name(content: str, name: str | None) -> str:
    """Replace ``{{name}}`` / ``{{name|fallback}}`` merge fields (HTML-safe)."""
    if "{{" not in content:
        return content

    def replace(match: re.Match[str]) -> str:
        return name if name else (match.group(1) or "")

    return NAME_FIELD.sub(replace, content)
