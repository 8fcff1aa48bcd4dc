"""Themes: a look is a folder of templates plus brand settings, nothing else.

``templates/themes/<name>/`` holds the templates that differ from the shared ones in
``templates/`` (at least ``look.css.j2``) and a ``theme.toml`` whose ``[brand]`` table
gives that look's colours and fonts. ``theme = "bulletin"`` in newsletter.toml picks one;
a project's own ``templates/themes/<name>/`` adds a theme or overrides a built-in one, and
``[brand]`` keys set in newsletter.toml (or ``NEWSLETTER_BRAND__*``) win over the theme's.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from ..config import Brand, Settings, where_set
from ..errors import RenderError

THEMES = "themes"
THEME_FILE = "theme.toml"


def theme_dirs(settings: Settings, builtin: Path) -> list[Path]:
    """The folders a theme's templates come from, the project's first; a theme found in
    neither is a one-line error naming the themes there are."""
    user = settings.templates_path
    found = [
        folder / THEMES / settings.theme
        for folder in ([user] if user else []) + [builtin]
        if (folder / THEMES / settings.theme).is_dir()
    ]
    if not found:
        names = sorted(
            {d.name for f in ([user] if user else []) + [builtin] if (f / THEMES).is_dir()
             for d in (f / THEMES).iterdir() if d.is_dir()}
        )
        raise RenderError(
            f"{where_set(settings, 'theme')}: theme {settings.theme!r} not found: set theme "
            f"to one of {', '.join(names)} (folders of templates/themes/)"
        )
    return found


@lru_cache(maxsize=16)
def _theme_brand(path: str, mtime: float) -> dict[str, object]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RenderError(f"{path}: cannot read the theme: {exc}") from None
    brand = data.get("brand", {})
    if not isinstance(brand, dict):
        raise RenderError(f"{path}: [brand] must be a table of brand settings")
    return brand


def theme_brand(settings: Settings, folders: list[Path]) -> Brand:
    """The brand the email is drawn with: the theme's ``[brand]`` defaults, then every key
    the project set itself."""
    defaults: dict[str, object] = {}
    for folder in reversed(folders):  # the project's theme.toml last, so it wins
        file = folder / THEME_FILE
        if file.is_file():
            defaults.update(_theme_brand(str(file), file.stat().st_mtime))
    if not defaults:
        return settings.brand
    own = settings.brand.model_dump(include=settings.brand.model_fields_set)
    try:
        return Brand(**{**defaults, **own})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise RenderError(
            f"theme {settings.theme!r}: brand setting {where}: {error['msg']}"
        ) from None
