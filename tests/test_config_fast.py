"""Settings load without pydantic, and give what the pydantic model gives for every value.

``configfields`` takes values that are surely right as given; everything else goes
through the pydantic model built from the same declaration (``configmodel``). Here every
field is tried with right, wrong and borderline values: whatever the fast path accepts
must be exactly what pydantic makes of it, and a normal project must take the fast path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from newsletter.config import Brand, Settings
from newsletter.configmodel import validate

# values tried for every field, whatever its type: most are wrong for most fields
ANY = [None, "", "x", " 5 ", "5", "true", "false", "#ABCDEF", "#abc", "red", "UTC",
       "Europe/London", "Mars/Olympus", "en", "en-GB", "en\n", "https://x.org/",
       "http://x.org", "a b", "News <n@example.org>", "n@example.org\r\nBcc: x@y",
       "s" * 31, "s" * 32, "classic", "Classic", 0, 1, 5, 9, 10, 16, 90, 600, 601, 100_000,
       -1, 0.0, 0.5, 5.0, 6.5, float("nan"), float("inf"), True, False, [], ["a"],
       ["TK", " lorem   ipsum "], [" "], ("a",), [1], {}, {"ses": 14}, {"ses": 0.5},
       {"pigeon": 1}, {"ses": 0}, {"ses": True}, {"ses": "14"}, {"duplicate-link": "off"},
       {"duplicate-link": "loud"}, {"no-such-rule": "off"}, {"primary_color": "#000"},
       {"nope": 1}, Path("p"), "outbox", "ses", "us", "eu", ["https://a.org"],
       ["https://a.org/path"]]


def outcome(cls: type, values: dict[str, Any]) -> Any:
    try:
        return validate(cls, values)
    except ValidationError:
        return "refused"


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("cls", [Settings, Brand])
def test_what_the_fast_path_takes_is_what_pydantic_makes(cls: type) -> None:
    taken = 0
    for name in cls.model_fields:
        for value in ANY:
            fast = cls.fast({name: value})
            if fast is None:
                continue
            taken += 1
            slow = outcome(cls, {name: value})
            assert slow != "refused", (name, value, fast[name])
            assert fast.keys() == slow.keys()
            for key in fast:
                assert same(fast[key], slow[key]), (name, value, key, fast[key], slow[key])
    assert taken > len(cls.model_fields)  # every field takes some value the fast way


def test_unknown_keys_and_wrong_values_still_fail_as_pydantic_says() -> None:
    for values in ({"bakend": "smtp"}, {"logo_width": "wide"}, {"timezone": "Mars/Olympus"}):
        cls = Brand if "logo_width" in values else Settings
        with pytest.raises(ValidationError):
            cls(**values)
    converted = Settings(archive="false", headline_max="120", brand={"logo_width": "200"})
    assert (converted.archive, converted.headline_max) == (False, 120)
    assert converted.brand.logo_width == 200 and converted.brand.model_fields_set == {
        "logo_width"}


def test_copies_dumps_and_given_fields_behave_as_pydantic_models_did() -> None:
    settings = Settings(name="A", brand={"primary_color": "#ABCDEF"})
    assert settings.model_fields_set == {"name", "brand"}
    assert settings.brand.model_dump(include=settings.brand.model_fields_set) == {
        "primary_color": "#abcdef"}
    copy = settings.model_copy(update={"from_address": "bad\nvalue"})  # unchecked, as before
    assert copy.from_address == "bad\nvalue" and settings.from_address is None
    assert copy.model_fields_set == {"name", "brand", "from_address"}
    assert settings == Settings(name="A", brand={"primary_color": "#abcdef"}) != copy
    assert Brand(**settings.brand.model_dump()) == settings.brand


def test_a_normal_project_loads_without_pydantic(tmp_path: Path) -> None:
    (tmp_path / "newsletter.toml").write_text(
        'name = "N"\nfrom_address = "n@example.org"\nbase_url = "https://n.example.org"\n'
        'secret_key = "' + "k" * 40 + '"\ntimezone = "Europe/London"\n'
        'bounce_fetch_minutes = 5\n[max_rate]\nses = 14\n[rules]\nduplicate-link = "off"\n'
        '[brand]\nprimary_color = "#0B6E4F"\nlogo_width = 200\n', encoding="utf-8")
    code = ("import sys; from newsletter.config import load_settings; "
            f"s = load_settings({str(tmp_path)!r}); "
            "print(s.brand.primary_color, s.max_rate, 'pydantic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["#0b6e4f", "{'ses':", "14.0}", "False"]
