"""Every rule id the checks can report, with its default severity; no imports.

The README's rule table lists each id with an example (tests/test_editorial.py checks
both ways). ``[rules]`` in newsletter.toml may turn a *warning* off or make it an error
("off" | "warning" | "error"); errors always stay errors, so nothing that would reach
readers broken can be switched off.
"""

from __future__ import annotations

ERROR, WARNING = "error", "warning"
LEVELS = ("off", WARNING, ERROR)

DEFAULTS: dict[str, str] = {
    # the file and its front matter
    "issue-too-large": ERROR,
    "unreadable": ERROR,
    "control-character": ERROR,
    "front-matter-missing": ERROR,
    "front-matter-unclosed": ERROR,
    "front-matter-not-mapping": ERROR,
    "front-matter-unknown-key": WARNING,
    "yaml-syntax": ERROR,
    "subject-missing": ERROR,
    "subject-type": ERROR,
    "subject-too-long": ERROR,
    "subject-long": WARNING,
    "preheader-type": ERROR,
    "preheader-missing": WARNING,
    "preheader-too-long": ERROR,
    "preheader-long": WARNING,
    "date-missing": ERROR,
    "date-format": ERROR,
    "send-at-type": ERROR,
    "send-at-format": ERROR,
    "subject-variants-type": ERROR,
    "subject-variants-count": ERROR,
    "subject-variant-too-long": ERROR,
    "subject-variants-duplicate": ERROR,
    # structure
    "no-sections": ERROR,
    "text-before-section": ERROR,
    "section-heading-format": ERROR,
    "section-kind-unknown": ERROR,
    "section-headline-missing": ERROR,
    "heading-space": ERROR,
    "heading-level": ERROR,
    "subheading-in-story": ERROR,
    "lead-duplicate": ERROR,
    "lead-not-first": ERROR,
    "story-empty": ERROR,
    "hard-numbers-empty": ERROR,
    "hard-numbers-figure": ERROR,
    "hard-numbers-item-empty": ERROR,
    "watching-empty": ERROR,
    "watching-item-title": ERROR,
    "watching-item-empty": ERROR,
    "ignoring-empty": ERROR,
    "ignoring-item-title": ERROR,
    "ignoring-item-empty": ERROR,
    "quote-empty": ERROR,
    "quote-attribution-missing": ERROR,
    "quote-image": ERROR,
    "quote-long": WARNING,
    "sponsor-empty": ERROR,
    "sponsor-link-missing": WARNING,
    "sponsor-first": WARNING,
    "kicker-empty": ERROR,
    "kicker-format": ERROR,
    "kicker-kind": ERROR,
    "kicker-long": WARNING,
    "contents-type": ERROR,
    # what email cannot show
    "raw-html": ERROR,
    "code-block": ERROR,
    "table": ERROR,
    "blockquote": ERROR,
    "horizontal-rule": ERROR,
    "list-nested": ERROR,
    "list-content": ERROR,
    "too-deep": ERROR,
    "formatting-too-deep": ERROR,
    "text-too-long": ERROR,
    "html-too-large": ERROR,
    "template-error": ERROR,
    # text that would show as raw Markdown
    "emphasis-unpaired": ERROR,
    "html-entity": ERROR,
    "link-syntax": ERROR,
    "image-syntax": ERROR,
    "image-position": ERROR,
    "link-url": ERROR,
    "image-url": ERROR,
    "image-file": ERROR,
    "image-alt-missing": ERROR,
    "image-credit-missing": WARNING,
    # merge fields
    "merge-field-unknown": ERROR,
    "merge-field-braces": ERROR,
    "merge-field-fallback-empty": ERROR,
    # placeholders and leftovers
    "placeholder-text": ERROR,
    "placeholder-link": ERROR,
    "placeholder-image": ERROR,
    "placeholder-word": ERROR,
    "example-domain": ERROR,
    "read-more-empty": ERROR,
    # house style
    "duplicate-link": WARNING,
    "recent-link": WARNING,
    "duplicate-read-more": WARNING,
    "headline-long": WARNING,
    "hard-numbers-source": WARNING,
}


def level_problem(rule: str, level: object) -> str | None:
    """Why ``rule = level`` cannot be a setting, or None when it can."""
    import difflib

    if rule not in DEFAULTS:
        close = difflib.get_close_matches(rule, list(DEFAULTS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "see the rule table in the README"
        return f"unknown rule '{rule}': {hint}"
    if level not in LEVELS:
        return f"rule '{rule}' must be \"off\", \"warning\" or \"error\", not {level!r}"
    if DEFAULTS[rule] == ERROR and level != ERROR:
        return (
            f"rule '{rule}' is an error and stays one (it would reach readers broken): "
            "only warnings can be turned off or made errors; remove this line"
        )
    return None
