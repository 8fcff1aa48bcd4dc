"""``newsletter check``: every link and image of an issue fetched, problems at their lines.

- ``targets(sections, lines)``: each http(s) link, Read more link and image with its line
  and column (``mailto:`` links are not fetched; local images are read from the project);
- ``check_file(settings, path, options)``: fetch them (``linkprobe``, concurrently, with a
  per-host limit), judge the answers, return findings in the validator's format;
- the answers are kept in ``.newsletter/linkcheck.json`` (0600) for a day
  (``use_cache=False`` fetches again); network failures are not kept, so a site that was
  down is asked again next time;
- ``image_size(settings, url)``: an image's probed width and height, for the renderer's
  ``<img width height>``, from the same file (kept 30 days) or, for a local image, from
  the file itself;
- ``check_before_send(settings, path)``: ``check_links_before_send = true`` stops a send
  whose links are broken, with one line.

Rule ids (severity): ``link-broken`` (error: 404, 410, 5xx, any other 4xx),
``link-blocked`` (warning: 401, 403, 429, which sites give robots), ``link-unreachable``
(error: no connection, no such host, a redirect loop), ``link-timeout`` (warning),
``link-redirects`` (warning: more than ``max_redirects`` hops), ``link-downgrade``
(warning: an https: link that ends on http:), ``image-not-image`` (error),
``image-too-large`` (warning: over 1 MB), ``image-narrow`` (warning: under 1,200 px wide
for the 600 px slot) and ``image-aspect`` (warning: far from the issue's other images).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import LinksBroken
from .media import RETINA_WIDTH, is_local
from .model import Finding, Section, Severity, block_texts, links_in
from .sourcemap import Locator, locate

CACHE_FILE = Path(".newsletter") / "linkcheck.json"
FRESH_SECONDS = 24 * 3600  # a check's answers are reused for a day
KEEP_SECONDS = 30 * 24 * 3600  # image sizes stay known for the renderer a month
ASPECT_FACTOR = 1.5  # wider or taller than this times the issue's usual shape
SEVERITY = {
    "link-broken": Severity.ERROR, "link-unreachable": Severity.ERROR,
    "image-not-image": Severity.ERROR, "link-blocked": Severity.WARNING,
    "link-timeout": Severity.WARNING, "link-redirects": Severity.WARNING,
    "link-downgrade": Severity.WARNING, "image-too-large": Severity.WARNING,
    "image-narrow": Severity.WARNING, "image-aspect": Severity.WARNING,
}
BLOCKED = {401, 403, 429}


@dataclass(frozen=True)
class Target:
    url: str
    kind: str  # "link" or "image"
    line: int
    column: int
    section: int  # index of its section


@dataclass(frozen=True)
class CheckOptions:
    timeout: float = 10.0
    per_host: int = 6
    max_redirects: int = 3
    use_cache: bool = True
    verify: object = True  # httpx's verify: tests pass their own CA
    offline: bool = False  # judge what the cache knows, fetch nothing (the preview's page)


@dataclass
class Report:
    path: str
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0  # distinct URLs
    fetched: int = 0  # of which fetched now (the rest from the cache)
    unchecked: int = 0  # offline: not in the cache
    checked_at: float | None = None  # offline: the oldest cached answer used
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]


# -- what to check ------------------------------------------------------------------------


def targets(sections: list[Section], lines: list[str]) -> list[Target]:
    """Every image and http(s) link, in file order, at its line and column."""
    found: list[Target] = []
    for index, section in enumerate(sections):
        image = section.image
        if image is not None and image.src:
            line, col = locate(lines, image.src, image.line, image.line)
            found.append(Target(image.src, "image", line, col, index))
        for first, inlines in block_texts(section.all_blocks()):
            where = Locator(lines, first, first + 200)
            for link in links_in(inlines):
                if link.href.startswith(("http://", "https://")):
                    line, col = where.next(link.href)
                    found.append(Target(link.href, "link", line, col, index))
        more = section.read_more
        if more is not None and more.href.startswith(("http://", "https://")):
            line, col = locate(lines, more.href, more.line, more.line)
            found.append(Target(more.href, "link", line, col, index))
    return found


# -- the cache ----------------------------------------------------------------------------


def cache_path(settings: Settings) -> Path:
    return settings.path(CACHE_FILE)


_memo: dict[str, tuple[float, dict]] = {}  # path -> (mtime, entries): for image_size


def load_cache(settings: Settings) -> dict[str, dict]:
    """The cached answers by "kind url" (an unreadable file is an empty cache)."""
    path = cache_path(settings)
    try:
        mtime = path.stat().st_mtime
        memo = _memo.get(str(path))
        if memo and memo[0] == mtime:
            return memo[1]
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data.get("entries", {}) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
    entries = entries if isinstance(entries, dict) else {}
    _memo[str(path)] = (mtime, entries)
    return entries


def save_cache(settings: Settings, probes: list) -> None:
    """Add definitive answers to the cache file (0600), dropping month-old ones; a cache
    that cannot be written is skipped (the check still reports)."""
    from ..private import open_private, private_folder

    path = cache_path(settings)
    now = time.time()
    entries = {k: v for k, v in load_cache(settings).items()
               if isinstance(v, dict) and now - float(v.get("checked_at", 0)) < KEEP_SECONDS}
    for probe in probes:
        if probe.definitive:
            entries[f"{probe.kind} {probe.url}"] = probe.to_dict()
    try:
        private_folder(path.parent)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open_private(temp, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "entries": entries}, handle)
        os.replace(temp, path)
    except OSError:
        return


# -- judging ------------------------------------------------------------------------------


def _what(target: Target) -> str:
    short = target.url if len(target.url) <= 80 else target.url[:77] + "..."
    return f"the {'image' if target.kind == 'image' else 'link'} {short}"


def _answer_problem(target: Target, probe, options: CheckOptions) -> list[tuple[str, str]]:
    """(rule, message) for how the URL answered: status, failures, redirects."""
    what = _what(target)
    if probe.failure == "timeout":
        return [("link-timeout", f"{what} did not answer within {options.timeout:g} s: "
                 "open it in a browser; the site may be down or slow")]
    if probe.failure:
        return [("link-unreachable", f"{what} cannot be reached ({probe.error}): check the "
                 "address")]
    status = f"{probe.status} {probe.reason}".strip()
    if probe.status in BLOCKED:
        return [("link-blocked", f"{what} answers {status} to an automatic check: open it in "
                 "a browser to be sure it works")]
    if probe.status is not None and probe.status >= 400:
        return [("link-broken", f"{what} answers {status}: fix or remove the "
                 f"{'image' if target.kind == 'image' else 'link'}")]
    found = []
    if probe.hops > options.max_redirects:
        found.append(("link-redirects", f"{what} goes through {probe.hops} redirects "
                      f"(more than {options.max_redirects}): link to where it ends, "
                      f"{probe.final_url}"))
    if probe.downgrade:
        found.append(("link-downgrade", f"{what} redirects from https: to an insecure http: "
                      f"address ({probe.downgrade}): link to a secure page instead"))
    return found


def _image_problems(target: Target, probe) -> list[tuple[str, str]]:
    if probe.status is None or probe.status >= 400 or probe.failure:
        return []
    what = _what(target)
    if probe.image_format is None:
        kind = probe.content_type or "no content type"
        return [("image-not-image", f"{what} is not an image (it sent {kind} that no image "
                 "reader understands): use the address of the picture itself")]
    found = []
    if probe.size is not None and probe.size > 1024 * 1024:
        found.append(("image-too-large", f"{what} is {probe.size / 1048576:.1f} MB, over "
                      "1 MB: slow on phones; resize it to 1,200 px wide or compress it"))
    if probe.width is not None and probe.width < RETINA_WIDTH:
        found.append(("image-narrow", f"{what} is {probe.width} px wide: a 600 px slot "
                      f"needs {RETINA_WIDTH:,} px to look sharp on retina screens"))
    return found


def _aspect_problems(pairs: list[tuple[Target, object]]) -> list[tuple[Target, str, str]]:
    """Images whose shape is far from the issue's usual one (needs three or more)."""
    shaped = [(t, p.width / p.height) for t, p in pairs
              if getattr(p, "width", None) and getattr(p, "height", None)]
    if len(shaped) < 3:
        return []
    usual = statistics.median(ratio for _, ratio in shaped)
    found = []
    for target, ratio in shaped:
        if max(ratio / usual, usual / ratio) > ASPECT_FACTOR:
            found.append((target, "image-aspect", (
                f"{_what(target)} is {ratio:.2f}:1 (width:height) while the issue's other "
                f"images are about {usual:.2f}:1: crop it to match so the email looks even")))
    return found


def _finding(path: str, target: Target, rule: str, message: str) -> Finding:
    return Finding.model_construct(path=path, line=target.line, column=target.column,
                                   severity=SEVERITY[rule], message=message, rule=rule)


def judge(path: str, found: list[Target], probes: dict, options: CheckOptions) -> list[Finding]:
    findings: list[Finding] = []
    images: list[tuple[Target, object]] = []
    for target in found:
        probe = probes.get((target.kind, target.url))
        if probe is None:
            continue
        problems = _answer_problem(target, probe, options) if target.kind == "link" or \
            not is_local(target.url) else []
        if target.kind == "image":
            problems += _image_problems(target, probe) if not is_local(target.url) else \
                _local_problems(target, probe)
            images.append((target, probe))
        findings += [_finding(path, target, rule, message) for rule, message in problems]
    findings += [_finding(path, t, rule, message) for t, rule, message in _aspect_problems(images)]
    return sorted(findings, key=lambda f: (f.line, f.column, f.rule))


def _local_problems(target: Target, media) -> list[tuple[str, str]]:
    if media.source_width < RETINA_WIDTH:
        return [("image-narrow", f"{_what(target)} is {media.source_width} px wide: a 600 px "
                 f"slot needs {RETINA_WIDTH:,} px to look sharp on retina screens (it is "
                 "never scaled up)")]
    return []


# -- running a check ----------------------------------------------------------------------


def _local_plans(settings: Settings, found: list[Target]) -> dict:
    from ..errors import MediaError
    from .media import plan

    plans = {}
    for target in found:
        if target.kind == "image" and is_local(target.url):
            try:
                plans[("image", target.url)] = plan(settings, target.url)
            except MediaError:
                continue  # `validate` reports it at its line
    return plans


def check_sections(
    settings: Settings, path: str, sections: list[Section], lines: list[str],
    options: CheckOptions | None = None,
) -> Report:
    """Check the links and images of parsed sections (the library call behind `check`)."""
    from .linkprobe import FetchOptions, Probe, fetch_all

    options = options or CheckOptions()
    started = time.perf_counter()
    found = targets(sections, lines)
    probes: dict = _local_plans(settings, found)
    local = len(probes)
    wanted = list(dict.fromkeys((t.kind, t.url) for t in found if not is_local(t.url)))
    if options.use_cache:
        cached = load_cache(settings)
        now = time.time()
        for key in wanted:
            entry = cached.get(f"{key[0]} {key[1]}")
            probe = Probe.from_dict(entry) if isinstance(entry, dict) else None
            if probe is not None and now - probe.checked_at < FRESH_SECONDS:
                probes[key] = probe
    missing = [key for key in wanted if key not in probes]
    if options.offline:
        times = [p.checked_at for k, p in probes.items() if k in set(wanted)]
        return Report(path=path, findings=judge(path, found, probes, options),
                      checked=len(wanted) + local - len(missing), unchecked=len(missing),
                      checked_at=min(times) if times else None)
    if missing:
        fetch = FetchOptions(timeout=options.timeout, per_host=options.per_host,
                             verify=options.verify)
        fetched = asyncio.run(fetch_all(missing, fetch))
        probes.update(fetched)
        save_cache(settings, list(fetched.values()))
    return Report(path=path, findings=judge(path, found, probes, options),
                  checked=len(wanted) + local, fetched=len(missing),
                  seconds=time.perf_counter() - started)


def check_file(settings: Settings, path: Path | str, options: CheckOptions | None = None) -> Report:
    """Check one issue file; a UsageError when it cannot be read at all."""
    from .build import read_issue_text
    from .parse import parse_text

    text = read_issue_text(Path(path))
    parsed = parse_text(text, str(path))
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return check_sections(settings, str(path), parsed.sections, lines, options)


def check_before_send(settings: Settings, path: Path | str) -> None:
    """With ``check_links_before_send = true``: LinksBroken (one line) on any error."""
    if not getattr(settings, "check_links_before_send", False):
        return
    report = check_file(settings, path)
    if report.errors:
        first = report.errors[0]
        raise LinksBroken(
            f"{path}:{first.line}: {first.message} [{first.rule}]; not sent "
            f"({len(report.errors)} link error(s): run `newsletter check {path}`)")


# -- sizes for the renderer -------------------------------------------------------------


def image_size(settings: Settings, url: str) -> tuple[int, int] | None:
    """An image's width and height in pixels, if known: a local image's published size,
    else what `newsletter check` probed (kept 30 days), else None."""
    if is_local(url):
        from ..errors import MediaError
        from .media import plan

        try:
            media = plan(settings, url)
        except MediaError:
            return None
        return media.width, media.height
    entry = load_cache(settings).get(f"image {url}")
    if isinstance(entry, dict):
        width, height = entry.get("width"), entry.get("height")
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            return width, height
    return None
