"""The plain-text part, built from the model: headlines, figures, paragraphs, link references."""

from __future__ import annotations

import re
import textwrap

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.authoring.build import build_file, build_text
from newsletter.authoring.text import WIDTH, fill
from newsletter.config import Settings

from .conftest import SAMPLE


def test_sample_issue_text_part(settings: Settings) -> None:
    result = build_file(SAMPLE, settings)
    assert result.rendered is not None
    text = result.rendered.text
    lines = text.split("\n")
    # the name and the date open it
    assert lines[:4] == ["TEST BRIEFING", "=============", "", "Tuesday, 24 November 2026"]
    # headlines, underlined
    # (Lead and Story carry no label: those are the editors' words, not the readers')
    index = lines.index("Can the river towns rebuild before spring?")
    assert lines[index + 1] == "-" * len(lines[index])
    assert "HARD NUMBERS: Evacuations, fares and a quiet record" in lines
    assert "WHAT WE'RE WATCHING: A bank blinks, a summit wobbles" in lines
    # figures stand on their own line, their text indented under them
    figure = lines.index("70,000")
    assert lines[figure + 1].startswith("  People left their homes")
    assert "3.2%" in lines and "1 in 4" in lines
    # watching items are titled
    assert "* The central bank steps in" in lines
    # image captions with credits, bullet lists
    assert "[Image: Volunteers stack sandbags" in text
    assert "(Photo: Lena Okafor/Northern Wire)]" in text
    assert "- Complaints received: three, all about the coffee machine" in text
    # paragraphs are wrapped at 72 columns and keep emphasis as plain marks
    assert all(len(line) <= WIDTH for line in lines if " " in line.strip())
    assert "*4,200 homes*" in text
    # no HTML at all
    assert not re.search(r"<[a-z/][^>]*>", text)


def test_links_become_numbered_references(settings: Settings) -> None:
    result = build_file(SAMPLE, settings)
    assert result.rendered is not None
    text = result.rendered.text
    assert "Read the authority\u2019s damage survey [1] for" in text
    assert "Read the full report [2]" in text
    links = text.split("\nLinks:\n", 1)[1].strip().split("\n")
    assert links[:2] == [
        "[1] https://news.sendtest.news/alder-survey",
        "[2] https://news.sendtest.news/river-towns-rebuild",
    ]
    assert links[-1] == "[3] https://news.sendtest.news/holloway"
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_repeated_links_share_a_number_and_mailto_is_inline(settings: Settings) -> None:
    body = (
        "# Lead: X\nSee [this](https://news.sendtest.news/a) and [that](https://news.sendtest.news/a), "
        "or write to [desk@example.org](mailto:desk@example.org).\n"
    )
    front = "---\nsubject: s\npreheader: p\ndate: 2026-11-24\n---\n"
    result = build_text(front + body, "t.md", settings)
    assert result.rendered is not None
    text = result.rendered.text
    assert "See this [1] and that [1], or write to desk@example.org." in text
    assert "[2]" not in text


def test_footer_has_postal_address_and_archive_link(settings: Settings) -> None:
    result = build_file(SAMPLE, settings)
    assert result.rendered is not None
    text = result.rendered.text
    assert "Test Briefing, 1 Example Street, Example City, EX1 2MP" in text
    assert "Read in your browser: https://news.example.org/archive/2026-11-24" in text


WORDS = st.sampled_from(["a", "bb", "word", "[12]", "e\u00e9", "-", "x" * 71, "x" * 72, "x" * 80])


@hypothesis_settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.lists(WORDS, max_size=40).map(" ".join),  # the fast path
        st.lists(st.sampled_from(["a", "bb", " ", "  ", "\t", "\u00a0", "\n", "x" * 75]),
                 max_size=40).map("".join),  # irregular white space: textwrap itself
    ),
    width=st.sampled_from([8, 20, 72]),
    initial=st.sampled_from(["", "  ", "- ", "10. "]),
    subsequent=st.sampled_from(["", "  ", "    "]),
)
def test_fill_is_exactly_textwrap(text: str, width: int, initial: str, subsequent: str) -> None:
    expected = textwrap.fill(
        text, width=width, initial_indent=initial, subsequent_indent=subsequent,
        break_long_words=False, break_on_hyphens=False,
    )
    assert fill(text, width, initial, subsequent) == expected


LONG_HEADLINE = (
    "The harbour vote that everyone in the town has been waiting for since the spring floods"
)
GREETING = (
    "Good morning, {{name|reader}}. Dock workers at Eastmouth voted on Tuesday to accept "
    "the offer that was put to them last week by the port authority and the union."
)


def _greeting_issue(tmp_path) -> str:
    path = tmp_path / "2026-11-24.md"
    path.write_text(
        "---\nsubject: The vote\ndate: 2026-11-24\npreheader: p\n---\n"
        f"# Lead: {LONG_HEADLINE}\n{GREETING}\n"
    )
    return str(path)


def _block(text: str, starts: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith(starts))
    end = lines.index("", first)
    return lines[first:end]


def test_long_headings_wrap_and_their_underline_matches_the_longest_line(settings, tmp_path):
    text = build_file(_greeting_issue(tmp_path), settings).rendered.text
    heading = _block(text, "The harbour vote")  # a Lead carries no label
    assert len(heading) == 3 and all(len(line) <= WIDTH for line in heading)
    assert " ".join(heading[:2]) == LONG_HEADLINE
    assert heading[2] == "-" * max(len(heading[0]), len(heading[1]))


def test_greeting_is_wrapped_after_the_name_is_filled_in(settings, tmp_path):
    from newsletter.delivery.personalize import Recipient, prepare

    settings.from_address = "news@example.org"
    settings.base_url = settings.base_url or "https://news.example.org"
    rendered = build_file(_greeting_issue(tmp_path), settings, personal=True).rendered
    template = prepare(rendered, settings, send_id=1, list_id=1, list_name="Daily")
    for name, shown in (("Maximilian Alexander", "Maximilian Alexander"), (None, "reader")):
        message = template.message(Recipient(1, "a@example.org", name))
        body = message.as_email().get_body(("plain",)).get_content()
        greeting = _block(body, "Good morning,")
        expected = textwrap.fill(GREETING.replace("{{name|reader}}", shown), WIDTH)
        assert "\n".join(greeting) == expected  # as full as any other paragraph
        heading = _block(body, "The harbour vote")
        assert heading[-1] == "-" * max(map(len, heading[:-1]))
    # the web copy fills in the fallback before wrapping too
    web = build_file(_greeting_issue(tmp_path), settings).rendered.text
    assert "\n".join(_block(web, "Good morning,")) == textwrap.fill(
        GREETING.replace("{{name|reader}}", "reader"), WIDTH)
    assert "\x02" not in web and "\x02" not in message.text
