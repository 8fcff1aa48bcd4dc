"""Project settings: ``newsletter.toml`` plus ``NEWSLETTER_*`` environment variables.

This module is the only reader of either. ``load_settings()`` finds the project
(the folder holding ``newsletter.toml``, searched from the current folder up, or
the one given), reads the file, applies environment overrides and validates the
result. Any wrong or missing value becomes one ``ConfigError`` line that names
the file, the line and the key.

``Settings`` and ``Brand`` are declared as pydantic models were, but are plain objects
(``configfields``): right values load without pydantic, which is imported (with the
models built from these declarations, ``configmodel``) only to convert or refuse others.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .configfields import Values, field, validator
from .errors import ConfigError

CONFIG_NAME = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"
_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # line breaks, tabs, NUL: never in a header
MIN_SECRET_BYTES = 32
NEW_SECRET_COMMAND = "python -c \"import secrets; print(secrets.token_urlsafe(32))\""
BackendName = Literal["outbox", "smtp", "sendgrid", "ses", "postmark", "mailgun"]
BACKENDS: tuple[str, ...] = get_args(BackendName)  # every delivery backend, by name


class Brand(Values):
    """Colours, logo and type of the email. Defaults survive Gmail's dark-mode inversion."""

    primary_color: str = "#b3261e"  # headings' rule, links, figures
    text_color: str = "#1f1f1f"
    muted_color: str = "#5f6368"  # credits, footer
    background_color: str = "#f4f1ea"  # around the 600 px body
    body_color: str = "#ffffff"  # the body itself
    dark_text_color: str = "#e8e6e3"
    dark_background_color: str = "#121212"
    dark_body_color: str = "#1e1e1e"
    dark_primary_color: str = "#f28b82"
    logo_url: str | None = None
    logo_dark_url: str | None = None  # shown instead of logo_url where dark mode is honoured
    logo_width: int = field(default=180, ge=16, le=600)
    font_family: str = "Georgia, 'Times New Roman', serif"
    heading_font_family: str = "Helvetica, Arial, sans-serif"

    @validator(
        "primary_color",
        "text_color",
        "muted_color",
        "background_color",
        "body_color",
        "dark_text_color",
        "dark_background_color",
        "dark_body_color",
        "dark_primary_color",
    )
    def _hex(value: str) -> str:
        if not _HEX.match(value):
            raise ValueError(f"{value!r} is not a colour: use #rgb or #rrggbb, for example #b3261e")
        return value.lower()

    @validator("logo_url", "logo_dark_url")
    def _https(value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("the logo must be an absolute https:// URL")
        return value


class Settings(Values):
    """Every setting of a newsletter project. Relative paths are relative to ``project_dir``.

    ``load_settings`` fills it from newsletter.toml and ``NEWSLETTER_*`` variables; built
    directly (``Settings(secret_key=...)``) it takes only the values given and the defaults.
    """

    project_dir: Path = Path(".")
    name: str = field(default="The Daily Briefing", min_length=1, max_length=100)
    from_address: str | None = None
    reply_to: str | None = None
    postal_address: str | None = None
    base_url: str | None = None
    secret_key: str | None = None
    old_secret_keys: list[str] = field(default_factory=list)
    old_secret_days: int = field(default=90, ge=0)
    # how long a preference-centre link in an email works (audience.tokens, preferences)
    preferences_link_days: int = field(default=90, ge=1, le=3650)
    timezone: str = "UTC"
    lang: str = field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    footer_text: str = "You are receiving this because you subscribed to our newsletter."
    database_url: str | None = None
    backend: BackendName = "outbox"
    outbox_dir: Path = Path("outbox")
    smtp_url: str | None = None
    sendgrid_api_host: str = "https://api.sendgrid.com"
    # Amazon SES v2 (credentials from the standard AWS chain): region (default: the AWS
    # chain's), endpoint (default: AWS's), configuration set for its event publishing
    ses_region: str | None = None
    ses_endpoint_url: str | None = None
    ses_configuration_set: str | None = None
    # Postmark (token: POSTMARK_SERVER_TOKEN): API host and the broadcast message stream
    postmark_api_host: str = "https://api.postmarkapp.com"
    postmark_message_stream: str = field(default="broadcast", min_length=1, max_length=100)
    # Mailgun (key: MAILGUN_API_KEY): sending domain, region (us/eu), host (default: region's)
    mailgun_domain: str | None = None
    mailgun_region: Literal["us", "eu"] = "us"
    mailgun_api_host: str | None = None
    # messages per second per backend, across every worker, process and machine sharing
    # the database: [max_rate] ses = 14
    max_rate: dict[str, float] = field(default_factory=dict)
    templates: Path | None = None
    # the look: a folder of templates/themes/ (built in: classic, bulletin) + its brand defaults
    theme: str = field(default="classic", pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")
    contents: bool = False  # an "In this issue" list in every issue (front matter overrides)
    issues_dir: Path = Path("issues")
    archive: bool = True
    # click tracking (delivery.tracking): links rewritten to base_url/c/TOKEN; off for
    # the lists named in untracked_lists, and for an issue with `track_clicks: false`
    track_clicks: bool = True
    untracked_lists: list[str] = field(default_factory=list)
    track_opens: bool = False  # a 1x1 pixel base_url/o/TOKEN: may include machine opens
    # `newsletter serve`: SendGrid's Signed Event Webhook key (base64 DER or PEM), the
    # replay window in seconds, and the largest request body the public pages accept
    sendgrid_webhook_public_key: str | None = None
    webhook_max_age: int = field(default=300, ge=10, le=86400)
    max_body_bytes: int = field(default=5_000_000, ge=1024)
    # provider feedback (newsletter.feedback.*): SES through SNS (topics accepted), Postmark
    # webhooks (basic auth on our URL), Mailgun webhooks (HMAC signing key)
    ses_topic_arns: list[str] = field(default_factory=list)
    sns_test_host: str | None = None  # tests only: also trust http://HOST for SNS URLs
    postmark_webhook_user: str | None = None
    postmark_webhook_password: str | None = None
    mailgun_webhook_signing_key: str | None = None
    # the bounce mailbox for SMTP sends (newsletter.feedback.mailbox) and VERP return paths
    bounce_mailbox: str | None = None  # imaps://user:pass@host:993/INBOX?processed=Processed
    bounce_domain: str | None = None  # MAIL FROM bounces+TOKEN@bounce_domain
    bounce_fetch_minutes: float = field(default=5.0, gt=0, le=1440)
    soft_bounce_limit: int = field(default=3, ge=1)  # soft bounces within soft_bounce_days
    soft_bounce_days: int = field(default=7, ge=1)  # ... that count as a hard bounce
    schedule_grace_hours: float = field(default=6.0, ge=0)
    # recipients per ledger batch (default: the backend's own, e.g. 1,000 for SendGrid):
    # smaller batches put fewer recipients at stake ("uncertain") if a sender dies
    send_batch_size: int | None = field(default=None, ge=1, le=10_000)
    worker_poll_seconds: float = field(default=1.0, gt=0, le=60)  # how often it looks
    worker_progress_batches: int = field(default=10, ge=1)  # a progress log line per N
    check_links_before_send: bool = False  # `newsletter check` before every send: errors stop it
    # `newsletter serve`'s sign-up form and API (audience.signup): which lists the public
    # may join, the consent sentence shown (and its version, kept with each sign-up), the
    # sites allowed to call /api/subscribe, how long a confirmation link lives, and the
    # bot defences (each switchable: 0 or false turns it off)
    public_lists: list[str] = field(default_factory=list)
    signup_consent_text: str = field(
        default="Yes, send me this newsletter by email. I can unsubscribe at any time.",
        min_length=1, max_length=2000)
    signup_consent_version: str = field(default="1", min_length=1, max_length=40)
    signup_cors_origins: list[str] = field(default_factory=list)
    signup_confirm_days: int = field(default=7, ge=1, le=90)
    signup_honeypot: bool = True
    signup_min_seconds: float = field(default=3.0, ge=0, le=600)
    signup_ip_limit: int = field(default=10, ge=0)  # sign-ups per IP address per hour
    signup_address_limit: int = field(default=5, ge=0)  # sign-ups per address per day
    signup_block_disposable: bool = True
    demo: bool = False  # made by `newsletter demo`: example values allowed, outbox only
    brand: Brand = field(default_factory=Brand)
    # `newsletter validate`: leftover words that are errors, house-style limits and
    # rule severities ([rules] duplicate-link = "off" | "warning" | "error")
    placeholder_words: list[str] = field(
        default_factory=lambda: ["TK", "TODO", "XXX", "lorem ipsum"]
    )
    headline_max: int = field(default=90, ge=10, le=500)
    hard_numbers_need_source: bool = False
    recent_link_issues: int = field(default=5, ge=0, le=100)
    rules: dict[str, str] = field(default_factory=dict)

    @validator("rules")
    def _rules(value: dict[str, str]) -> dict[str, str]:
        if not value:
            return value
        from .authoring.rules import level_problem

        for rule, level in value.items():
            problem = level_problem(rule, level)
            if problem:
                raise ValueError(problem)
        return value

    @validator("placeholder_words")
    def _words(value: list[str]) -> list[str]:
        words = [" ".join(word.split()) for word in value]
        if not all(words):
            raise ValueError("an empty placeholder word would match everything: remove it")
        return words

    @validator("timezone")
    def _zone(value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as Europe/London"
            ) from None
        return value

    @validator("max_rate")
    def _rates(value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if name not in BACKENDS:
                raise ValueError(f"{name!r} is not a backend: use one of {', '.join(BACKENDS)}")
            if not rate > 0:
                raise ValueError(f"{name} = {rate}: a rate is messages per second, above 0")
        return value

    @validator("secret_key")
    def _secret(value: str | None) -> str | None:
        if value and len(value.encode("utf-8")) < MIN_SECRET_BYTES:
            raise ValueError(
                f"is {len(value.encode('utf-8'))} bytes; it must be at least "
                f"{MIN_SECRET_BYTES} (it signs every unsubscribe link): make one with "
                f"{NEW_SECRET_COMMAND}"
            )
        return value

    @validator("signup_cors_origins")
    def _origins(value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin: write it as https://www.example.org "
                                 "(scheme and host, no path)")
        return value

    @validator("name")
    def _one_line(value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("contains a line break or control character: write it on one line")
        return value

    @validator("base_url")
    def _base_url(value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not re.fullmatch(r"https?://[^/\s]+\S*", value):
            raise ValueError(
                "must be an absolute URL such as https://news.example.org, with no spaces or "
                "line breaks"
            )
        return value.rstrip("/")

    @validator("from_address", "reply_to")
    def _address(value: str | None) -> str | None:
        if value is None:
            return None
        if _CONTROL.search(value):
            raise ValueError(
                "contains a line break or control character, which would break the message "
                "headers at send time: write it on one line, as 'The Briefing <news@example.org>'"
            )
        if "@" not in value:
            raise ValueError(
                f"{value!r} is not an email address: write news@example.org or "
                "'The Briefing <news@example.org>'"
            )
        return value

    # -- resolved paths -------------------------------------------------------------

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else (self.project_dir / value)

    @property
    def issues_path(self) -> Path:
        return self.path(self.issues_dir)

    @property
    def outbox_path(self) -> Path:
        return self.path(self.outbox_dir)

    @property
    def templates_path(self) -> Path | None:
        """The user's templates folder, if any: it overrides the built-in templates."""
        if self.templates is not None:
            return self.path(self.templates)
        default = self.project_dir / "templates"
        return default if default.is_dir() else None

    @property
    def config_file(self) -> Path:
        return self.project_dir / CONFIG_NAME

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.project_dir / 'newsletter.db').resolve()}"


def find_project(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` holding newsletter.toml, or None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return None


# fields whose environment value is JSON (as pydantic-settings read them), e.g.
# NEWSLETTER_OLD_SECRET_KEYS='["old1", "old2"]' or NEWSLETTER_BRAND='{"primary_color": "#000"}'
_JSON_FIELDS = ("old_secret_keys", "brand", "public_lists", "signup_cors_origins",
                "max_rate")
_NESTED = "__"


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; nested tables are merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def env_values(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings given as ``NEWSLETTER_<KEY>`` variables (any case), nested with ``__``.

    ``NEWSLETTER_BRAND__PRIMARY_COLOR=#0b6e4f`` sets ``brand.primary_color``; list and table
    settings take JSON. Variables that name no setting (``NEWSLETTER_PROJECT``,
    ``NEWSLETTER_DEBUG``) are left to their readers.
    """
    environ = os.environ if environ is None else environ
    names = set(Settings.model_fields) - {"project_dir"}
    whole: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    prefix = ENV_PREFIX.lower()
    for variable, raw in environ.items():
        lowered = variable.lower()
        if not lowered.startswith(prefix):
            continue
        field, _, rest = lowered[len(prefix) :].partition(_NESTED)
        if field not in names:
            continue
        if rest:
            if field != "brand":
                continue
            nested = _merge(nested, {field: {rest: raw}})
        elif field in _JSON_FIELDS:
            try:
                whole[field] = json.loads(raw)
            except ValueError:
                example = {"brand": '{"primary_color": "#b3261e"}',
                           "max_rate": '{"ses": 14}'}.get(field, '["key1", "key2"]')
                raise ConfigError(
                    f"environment variable {variable}: not valid JSON; write it as {example}"
                    + (f" or set {ENV_PREFIX}BRAND__<KEY> per colour" if field == "brand" else "")
                ) from None
        else:
            whole[field] = raw
    return _merge(whole, nested)


def _env_name_for(loc: list[str]) -> str | None:
    """The environment variable (as spelt in the environment) that set ``loc``, if any."""
    wanted = [(ENV_PREFIX + _NESTED.join(loc[:i])).upper() for i in range(len(loc), 0, -1)]
    spelt = {name.upper(): name for name in os.environ}
    for name in wanted:
        if name in spelt:
            return spelt[name]
    return None


def _line_of(text: str, key: str) -> int:
    pattern = re.compile(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*=", re.MULTILINE)
    match = pattern.search(text)
    if match:
        return text.count("\n", 0, match.start()) + 1
    table = re.compile(rf"^[ \t]*\[[ \t]*{re.escape(key)}[ \t]*\]", re.MULTILINE).search(text)
    return text.count("\n", 0, table.start()) + 1 if table else 1


def _describe(error: dict[str, Any], toml_text: str, config_file: Path, data: dict) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    leaf = loc[-1] if loc else "?"
    env_name = _env_name_for(loc)
    if error["type"] == "extra_forbidden":
        import difflib  # only for this message

        section = data
        for part in loc[:-1]:
            section = section.get(part, {}) if isinstance(section, dict) else {}
        model: type[Values] = Brand if loc[:1] == ["brand"] else Settings
        names = [n for n in model.model_fields if n != "project_dir"]
        close = difflib.get_close_matches(leaf, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; remove it"
        if env_name and not _in_toml(data, loc):
            return f"environment variable {env_name}: unknown setting '{key}'{hint}"
        where = f"{config_file}:{_line_of(toml_text, leaf)}"
        return f"{where}: unknown setting '{key}'{hint}"
    message = error["msg"].removeprefix("Value error, ")
    if env_name:
        return f"environment variable {env_name}: {message}"
    named = re.search(r"rule '([\w-]+)'", message) if loc == ["rules"] else None
    leaf = named.group(1) if named else leaf  # [rules]: the rule's own line
    line = _line_of(toml_text, leaf) if toml_text else 1
    where = f"{config_file}:{line}" if toml_text else str(config_file)
    return f"{where}: setting '{key}': {message}"


def _in_toml(data: dict[str, Any], loc: list[str]) -> bool:
    section: Any = data
    for part in loc:
        if not isinstance(section, dict) or part not in section:
            return False
        section = section[part]
    return True


def load_settings(project: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the project's settings.

    ``project`` is a folder holding newsletter.toml (or the file itself); without it
    the current folder and its parents are searched. With no file at all the defaults
    apply in the current folder, so ``newsletter validate`` works on a loose file.
    """
    if project is not None:
        project = Path(project)
        if project.is_file():
            project = project.parent
        if not project.is_dir():
            raise ConfigError(f"{project}: no such project folder (check --project)")
        root: Path = project.resolve()
    else:
        root = find_project() or Path.cwd().resolve()
    config_file = root / CONFIG_NAME
    text = ""
    data: dict[str, Any] = {}
    if config_file.is_file():
        try:
            text = config_file.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except UnicodeDecodeError:
            raise ConfigError(f"{config_file}: not UTF-8 text; save it as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            line = match.group(1) if match else "1"
            raise ConfigError(
                f"{config_file}:{line}: TOML syntax error: {exc}; check quotes and brackets"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{config_file}: cannot read: {exc.strerror}") from None
        if "project_dir" in data:
            raise ConfigError(
                f"{config_file}:{_line_of(text, 'project_dir')}: 'project_dir' is not a "
                "setting; the project is the folder holding newsletter.toml"
            )
    values = _merge(_merge(data, env_values()), overrides)
    values["project_dir"] = root
    try:
        return Settings(**values)
    except ValueError as exc:  # pydantic's ValidationError, imported only for a wrong value
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            raise
        raise ConfigError(_describe(errors()[0], text, config_file, data)) from None


def where_set(settings: Settings, key: str) -> str:
    """Where a top-level setting's value comes from: ``file:line`` or the variable."""
    env_name = _env_name_for([key])
    if env_name:
        return f"environment variable {env_name}"
    try:
        text = settings.config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return str(settings.config_file)
    return f"{settings.config_file}:{_line_of(text, key)}"


def require(settings: Settings, *keys: str, purpose: str) -> None:
    """Raise a one-line ConfigError naming the first missing key and how to set it."""
    for key in keys:
        if not getattr(settings, key):
            raise ConfigError(
                f"{settings.config_file}: '{key}' is not set, and {purpose} needs it; add "
                f"{key} = \"...\" to newsletter.toml or set {ENV_PREFIX}{key.upper()}"
            )
