"""Local images: ``![alt](images/photo.jpg "credit")`` with the file in the project.

A local image is a relative path (no scheme, no host, not starting with ``/``), read from
the project folder (the one holding newsletter.toml) and never from outside it. For the
email it is made ready for a 600 px slot: scaled down to 1,200 px wide (2x for retina
screens; never scaled up), turned upright by its EXIF orientation, stripped of metadata
(EXIF, GPS, comments, text; its colour profile stays, so colours do not shift) and
written under ``out/media/`` as ``<name>-<hash>.<ext>``, the hash taken from the source
file's bytes. The email then links it as ``{base_url}/media/<file>``; ``newsletter serve`` serves that folder.

- ``plan(settings, src)``: what the published file will be (name, pixel size); no file
  is written (the result is kept per file and modification time). The renderer calls it, so ``validate`` and
  the preview never write anything.
- ``publish(settings, issue)``: writes the files an issue needs (``render``, ``send``).
- ``media_file(settings, name)``: a published file by name, for the web routes.
- ``image_findings(...)``: a missing or unreadable local image as a finding at its line.
- ``size_attributes(html, sizes)``: real ``height`` attributes on the ``<img>`` tags.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import Settings
from ..errors import MediaError
from .model import Finding, Issue, Section, Severity

SLOT_WIDTH = 600  # the email's column
RETINA_WIDTH = 2 * SLOT_WIDTH  # what a 600 px slot needs on a 2x screen
MEDIA_DIR = Path("out") / "media"
MEDIA_PATH = "media"  # URL path under base_url (and under the preview)
PROCESS_VERSION = "1"  # bump when the resizing changes: every published name changes
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif"}  # what every mail client shows
JPEG_QUALITY = 85
NAME_OK = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}-[0-9a-f]{12}\.(?:jpg|png|gif)$")
_KEPT_INFO = ("icc_profile", "transparency")  # colours and see-through, no metadata
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class MediaPlan:
    """A local image as it will be published."""

    source: Path
    name: str  # the file name under out/media/
    format: str  # Pillow's: JPEG, PNG, GIF
    width: int  # pixels of the published file
    height: int
    source_width: int  # pixels of the upright source

    @property
    def display(self) -> tuple[int, int]:
        """Width and height shown in a 600 px slot."""
        return display_size(self.width, self.height)


def display_size(width: int, height: int) -> tuple[int, int]:
    """An image's size in the 600 px slot: 600 wide (narrower ones as they are)."""
    if width <= SLOT_WIDTH:
        return width, height
    return SLOT_WIDTH, max(1, round(height * SLOT_WIDTH / width))


def is_local(src: str) -> bool:
    """A relative path to a file in the project (not a URL, not ``/abs``, not ``//host``)."""
    if not src or src.startswith(("/", "\\")):
        return False
    try:
        parts = urlsplit(src)
    except ValueError:
        return False
    return not parts.scheme and not parts.netloc


def media_folder(settings: Settings) -> Path:
    return settings.path(MEDIA_DIR)


def media_url(settings: Settings, name: str) -> str:
    """``{base_url}/media/<name>``; without a base URL, ``media/<name>`` (beside out/*.html)."""
    return f"{settings.base_url}/{MEDIA_PATH}/{name}" if settings.base_url else f"{MEDIA_PATH}/{name}"


def source_path(settings: Settings, src: str) -> Path:
    """The project file a local image names; a MediaError when it is outside the project."""
    root = settings.project_dir.resolve()
    path = (root / unquote(urlsplit(src).path)).resolve()
    if not path.is_relative_to(root):
        raise MediaError(f"the image {src!r} is outside the project folder: put it in images/")
    return path


_plans: dict[tuple[str, int, int], MediaPlan] = {}  # (path, mtime_ns, size) -> plan


def plan(settings: Settings, src: str) -> MediaPlan:
    """What ``src`` will be published as; a MediaError (one line) when it cannot be."""
    path = source_path(settings, src)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise MediaError(
            f"the image file {src!r} does not exist (looked for {path}): check the name, or "
            "copy the photo into the project"
        ) from None
    except OSError as exc:
        raise MediaError(f"the image file {src!r} cannot be read: {exc.strerror}") from None
    if not path.is_file():
        raise MediaError(f"the image {src!r} is a folder, not an image file")
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    found = _plans.get(key)
    if found is None:
        found = _plans[key] = _read_plan(path, src)
        if len(_plans) > 512:
            _plans.pop(next(iter(_plans)))
    return found


def _read_plan(path: Path, src: str) -> MediaPlan:
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
        with Image.open(path) as image:
            fmt, (width, height) = image.format or "", image.size
            if image.getexif().get(0x0112) in _ROTATED:
                width, height = height, width
    except (UnidentifiedImageError, SyntaxError, ValueError):
        raise MediaError(
            f"the file {src!r} is not an image Pillow can read: save it as JPEG or PNG"
        ) from None
    except OSError as exc:
        raise MediaError(f"the image file {src!r} cannot be read: {exc}") from None
    if fmt not in FORMATS:
        raise MediaError(
            f"the image {src!r} is {fmt or 'an unknown format'}, which not every mail client "
            "shows: save it as JPEG or PNG"
        )
    digest = hashlib.sha256(PROCESS_VERSION.encode() + data).hexdigest()[:12]
    stem = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:80] or "image"
    out_w, out_h = width, height
    if fmt != "GIF" and width > RETINA_WIDTH:  # GIFs keep their frames: never resized
        out_w, out_h = RETINA_WIDTH, max(1, round(height * RETINA_WIDTH / width))
    return MediaPlan(source=path, name=f"{stem}-{digest}{FORMATS[fmt]}", format=fmt,
                     width=out_w, height=out_h, source_width=width)


def local_images(issue: Issue) -> Iterator[tuple[Section, str]]:
    for section in issue.sections:
        if section.image is not None and is_local(section.image.src):
            yield section, section.image.src


def publish(settings: Settings, issue: Issue) -> list[Path]:
    """Write every local image of ``issue`` under out/media/ (a file already there is
    kept: its name says its content). Returns the files' paths."""
    written: dict[Path, None] = {}
    for _, src in local_images(issue):
        written[publish_one(settings, plan(settings, src))] = None
    return list(written)


def publish_one(settings: Settings, media: MediaPlan) -> Path:
    folder = media_folder(settings)
    target = folder / media.name
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = _processed(media)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=target.suffix)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)  # public: served to every reader
        os.replace(temp, target)
    except OSError as exc:
        raise MediaError(f"{target}: cannot write the resized image: {exc.strerror}") from None
    return target


def _processed(media: MediaPlan) -> bytes:
    """The published bytes: upright, at most 1,200 px wide, no metadata."""
    import io

    from PIL import Image, ImageOps

    if media.format == "GIF":
        return media.source.read_bytes()  # animation kept; GIFs carry no EXIF or GPS
    with Image.open(media.source) as image:
        upright = ImageOps.exif_transpose(image)
        if upright.width > RETINA_WIDTH:
            upright = upright.resize((media.width, media.height), Image.Resampling.LANCZOS)
        # Pillow writes EXIF (GPS included) only when given it, and a comment or text
        # chunks from ``info``: keep only what shows the picture right
        upright.info = {k: v for k, v in upright.info.items() if k in _KEPT_INFO}
        out = io.BytesIO()
        if media.format == "JPEG":
            if upright.mode not in ("RGB", "L"):
                upright = upright.convert("RGB")
            upright.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True,
                         icc_profile=upright.info.get("icc_profile"))
        else:
            upright.save(out, "PNG", optimize=True)
        return out.getvalue()


def media_file(settings: Settings, name: str) -> Path | None:
    """A published file by its name from a URL, or None: never a path from the URL."""
    if not NAME_OK.match(name):
        return None
    path = media_folder(settings) / name
    return path if path.is_file() else None


# -- the email's view of an issue -------------------------------------------------------


def email_issue(settings: Settings, issue: Issue) -> Issue:
    """``issue`` with each local image's src replaced by its media URL (one that cannot be
    published stays as written: ``validate`` reports it and nothing renders)."""
    if not any(True for _ in local_images(issue)):
        return issue
    sections = []
    for section in issue.sections:
        image = section.image
        if image is not None and is_local(image.src):
            try:
                url = media_url(settings, plan(settings, image.src).name)
            except MediaError:
                url = image.src
            section = section.model_copy(update={"image": image.model_copy(update={"src": url})})
        sections.append(section)
    return issue.model_copy(update={"sections": sections})


def email_sizes(settings: Settings, issue: Issue) -> dict[str, tuple[int, int]]:
    """The pixel size of each image whose size is known, by its src in the email."""
    from .linkcheck import image_size

    sizes = {}
    for section in issue.sections:
        if section.image is None or not section.image.src:
            continue
        size = image_size(settings, section.image.src)
        if size is not None:
            src = section.image.src
            if is_local(src):
                src = media_url(settings, plan(settings, src).name)
            sizes[src] = size
    return sizes


# -- findings and sizes -----------------------------------------------------------------


def image_findings(
    settings: Settings, sections: list[Section], lines: list[str], path: str
) -> list[Finding]:
    """Each local image that cannot be published, as an error at its line."""
    from .sourcemap import locate

    findings = []
    for section in sections:
        image = section.image
        if image is None or not is_local(image.src):
            continue
        try:
            plan(settings, image.src)
        except MediaError as exc:
            line, col = locate(lines, image.src, image.line, image.line)
            findings.append(Finding.model_construct(
                path=path, line=line, column=col, severity=Severity.ERROR, message=str(exc),
                rule="image-file"))
    return findings


_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'\s(src|width|height)="([^"]*)"')


def size_attributes(html: str, sizes: dict[str, tuple[int, int]]) -> str:
    """``<img>`` tags whose src has a known pixel size get ``height`` to match their
    ``width`` attribute (the inline style keeps ``height:auto``, so phones scale it)."""
    from html import unescape

    if not sizes:
        return html

    def fix(match: re.Match[str]) -> str:
        tag = match.group(0)
        attrs = {k: v for k, v in _ATTR.findall(tag)}
        size = sizes.get(unescape(attrs.get("src", "")))
        if size is None or not attrs.get("width", "").isdigit():
            return tag
        width, height = size
        shown = max(1, round(int(attrs["width"]) * height / width))
        if "height" in attrs:
            return tag.replace(f' height="{attrs["height"]}"', f' height="{shown}"', 1)
        return tag.replace("<img", f'<img height="{shown}"', 1)

    return _IMG.sub(fix, html)
