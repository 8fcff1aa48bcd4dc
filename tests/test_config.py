"""Settings: newsletter.toml found in parents, --project, NEWSLETTER_* variables, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import (
    CONFIG_NAME,
    Settings,
    env_values,
    find_project,
    load_settings,
    require,
)
from newsletter.errors import ConfigError


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def test_found_in_the_current_folder_or_its_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path / "proj", 'name = "Parent Briefing"\n')
    deep = tmp_path / "proj" / "issues" / "2026"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_project() == (tmp_path / "proj").resolve()
    settings = load_settings()
    assert settings.name == "Parent Briefing"
    assert settings.project_dir == (tmp_path / "proj").resolve()
    assert settings.issues_path == (tmp_path / "proj").resolve() / "issues"


def test_explicit_project_overrides_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path / "here", 'name = "Here"\n')
    write_config(tmp_path / "there", 'name = "There"\n')
    monkeypatch.chdir(tmp_path / "here")
    assert load_settings(tmp_path / "there").name == "There"
    assert load_settings(tmp_path / "there" / CONFIG_NAME).name == "There"  # the file itself
    with pytest.raises(ConfigError, match="no such project folder"):
        load_settings(tmp_path / "missing")


def test_no_file_means_defaults_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.name == "The Daily Briefing"
    assert settings.backend == "outbox" and settings.timezone == "UTC"
    assert settings.templates_path is None
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'newsletter.db'}"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        tmp_path,
        'name = "File"\nsmtp_url = "smtp://file:25"\n[brand]\nprimary_color = "#111111"\n'
        'text_color = "#222222"\n',
    )
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", "smtp://user:pass@host:587?starttls=true")
    monkeypatch.setenv("NEWSLETTER_BRAND__PRIMARY_COLOR", "#0B6E4F")
    monkeypatch.setenv("newsletter_backend", "smtp")  # any case, as before
    monkeypatch.setenv("NEWSLETTER_OLD_SECRET_KEYS", '["old-1", "old-2"]')
    monkeypatch.setenv("NEWSLETTER_ARCHIVE", "false")
    monkeypatch.setenv("NEWSLETTER_PROJECT", str(tmp_path))  # read by the CLI, not a setting
    settings = load_settings(tmp_path)
    assert settings.name == "File"
    assert settings.smtp_url == "smtp://user:pass@host:587?starttls=true"
    assert settings.backend == "smtp"
    assert settings.brand.primary_color == "#0b6e4f"  # from the environment, normalised
    assert settings.brand.text_color == "#222222"  # the file's other brand keys remain
    assert settings.old_secret_keys == ["old-1", "old-2"]
    assert settings.archive is False


def test_whole_brand_as_json_then_single_colours_on_top(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_BRAND", '{"text_color": "#000000", "primary_color": "#aaaaaa"}')
    monkeypatch.setenv("NEWSLETTER_BRAND__PRIMARY_COLOR", "#123456")
    assert env_values() == {"brand": {"text_color": "#000000", "primary_color": "#123456"}}


def test_overrides_beat_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_NAME", "From env")
    assert load_settings(tmp_path).name == "From env"
    assert load_settings(tmp_path, name="Given").name == "Given"


def test_secrets_never_come_from_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, 'sendgrid_api_key = "SG.xyz"\n')
    with pytest.raises(ConfigError, match="unknown setting 'sendgrid_api_key'"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "X"\ntimezone = "Mars/Olympus"\n',
         ":2: setting 'timezone': unknown time zone 'Mars/Olympus': use an IANA name"),
        ('name = "X"\n\nbackend = "pigeon"\n', ":3: setting 'backend': Input should be"),
        ('base_url = "news.example.org"\n', ":1: setting 'base_url': must be an absolute URL"),
        ('from_address = "nobody"\n', ":1: setting 'from_address': 'nobody' is not an email"),
        ('[brand]\nprimary_color = "red"\n', ":2: setting 'brand.primary_color': 'red' is not a"),
        ('[brand]\nlogo_url = "http://x.org/l.png"\n', ":2: setting 'brand.logo_url': the logo"),
        ('name = "X"\nbakend = "smtp"\n', ":2: unknown setting 'bakend'; did you mean 'backend'?"),
        ('[brand]\nprimary_colour = "#ffffff"\n',
         ":2: unknown setting 'brand.primary_colour'; did you mean 'primary_color'?"),
        ('name = "X\n', ":1: TOML syntax error"),
        ('project_dir = "/"\n', ":1: 'project_dir' is not a setting"),
    ],
)
def test_wrong_value_is_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{expected}"), message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("NEWSLETTER_TIMEZONE", "Nowhere", "environment variable NEWSLETTER_TIMEZONE: unknown time"),
        ("NEWSLETTER_BRAND__PRIMARY_COLOR", "blue",
         "environment variable NEWSLETTER_BRAND__PRIMARY_COLOR: 'blue' is not a colour"),
        ("NEWSLETTER_BRAND__PRIMARY_COLOUR", "#ffffff",
         "environment variable NEWSLETTER_BRAND__PRIMARY_COLOUR: unknown setting "
         "'brand.primary_colour'; did you mean 'primary_color'?"),
        ("NEWSLETTER_OLD_SECRET_KEYS", "old-1,old-2",
         "environment variable NEWSLETTER_OLD_SECRET_KEYS: not valid JSON"),
        ("NEWSLETTER_LOGO_WIDTH", "wide", None),  # not a setting (brand.logo_width is): ignored
    ],
)
def test_wrong_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str | None
) -> None:
    monkeypatch.setenv(name, value)
    if expected is None:
        assert load_settings(tmp_path).brand.logo_width == 180
        return
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert str(info.value).startswith(expected), str(info.value)
    assert "\n" not in str(info.value)


def test_require_names_the_missing_key(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    with pytest.raises(ConfigError) as info:
        require(settings, "from_address", purpose="sending")
    assert "'from_address' is not set, and sending needs it" in str(info.value)
    assert "NEWSLETTER_FROM_ADDRESS" in str(info.value)
    require(load_settings(tmp_path, from_address="a@example.org"), "from_address", purpose="x")


def test_templates_setting_and_default_folder(tmp_path: Path) -> None:
    assert load_settings(tmp_path).templates_path is None
    (tmp_path / "templates").mkdir()
    assert load_settings(tmp_path).templates_path == tmp_path.resolve() / "templates"
    write_config(tmp_path, 'templates = "mine"\n')
    assert load_settings(tmp_path).templates_path == tmp_path.resolve() / "mine"


def test_direct_construction_takes_only_given_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_NAME", "ignored")
    settings = Settings(secret_key="s" * 32)
    assert settings.name == "The Daily Briefing" and settings.secret_key == "s" * 32


# -- secrets and header-safe values ----------------------------------------------------------


def test_a_short_secret_key_is_refused_with_file_line_and_the_command(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'name = "Short"\nsecret_key = "only-twenty-chars-xx"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{config}:2: setting 'secret_key': is 20 bytes"), message
    assert "at least 32" in message and "secrets.token_urlsafe(32)" in message
    assert "\n" not in message
    write_config(tmp_path, f'secret_key = "{"k" * 32}"\n')
    assert load_settings(tmp_path).secret_key == "k" * 32


def test_a_short_secret_key_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "s3cret")
    with pytest.raises(ConfigError, match=r"^environment variable NEWSLETTER_SECRET_KEY: is 6 b"):
        load_settings(tmp_path)


def test_init_writes_a_key_long_enough(tmp_path: Path) -> None:
    from newsletter.authoring.project import init_project

    init_project(tmp_path / "p")
    key = load_settings(tmp_path / "p").secret_key
    assert key is not None and len(key.encode()) >= 32


@pytest.mark.parametrize(
    ("key", "toml_value"),
    [
        ("from_address", r'"News <news@example.org>\r\nBcc: all@example.net"'),
        ("reply_to", r'"desk@example.org\nBcc: all@example.net"'),
        ("name", r'"The Briefing\r\nBcc: all@example.net"'),
        ("base_url", r'"https://news.example.org/x\r\nBcc: all@example.net"'),
    ],
)
def test_line_breaks_in_header_values_are_refused_at_load(
    tmp_path: Path, key: str, toml_value: str
) -> None:
    config = write_config(tmp_path, f'lang = "en"\n\n{key} = {toml_value}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{config}:3: setting '{key}': "), message
    assert ("line break" in message) and "\n" not in message and "\r" not in message
