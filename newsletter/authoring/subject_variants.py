"""The one rule for a subject test's subjects: ``subject_variants:`` in the front matter
and ``newsletter send --subject`` alike.

Two to four subjects, each one line of text of at most ``SUBJECT_MAX`` characters, no
two the same (compared without regard to case or repeated spaces: readers could not tell
them apart, so the test could not either). Variant letters follow the order written: the
first is A, which wins a tie.
"""

from __future__ import annotations

from typing import Any

SUBJECT_MAX = 150  # as the subject's own limit (validate.SUBJECT_MAX)
MIN_VARIANTS, MAX_VARIANTS = 2, 4
LETTERS = ("A", "B", "C", "D")


def _key(subject: str) -> str:
    return " ".join(subject.split()).casefold()


def variant_problems(subjects: Any) -> list[tuple[str, str]]:
    """Every problem of a list of variant subjects as (rule id, message with the fix)."""
    if not isinstance(subjects, list) or any(isinstance(s, dict | list) or s is None
                                             for s in subjects):
        return [("subject-variants-type", "subject_variants must be a list of subjects, one "
                 "per line starting with '- '")]
    texts = [str(s).strip() for s in subjects]
    problems: list[tuple[str, str]] = []
    if not MIN_VARIANTS <= len(texts) <= MAX_VARIANTS:
        problems.append(("subject-variants-count", f"a subject test needs 2 to 4 subjects, "
                         f"not {len(texts)}: add or remove subjects"))
    for letter, text in zip(LETTERS * 2, texts, strict=False):
        if not text:
            problems.append(("subject-variants-type", f"subject {letter} is empty: write it "
                             "or remove its line"))
        elif len(text) > SUBJECT_MAX:
            problems.append(("subject-variant-too-long", f"subject {letter} has {len(text)} "
                             f"characters; the limit is {SUBJECT_MAX}: shorten it"))
    seen: dict[str, str] = {}
    for letter, text in zip(LETTERS * 2, texts, strict=False):
        if text and _key(text) in seen:
            problems.append(("subject-variants-duplicate", f"subject {letter} is the same as "
                             f"subject {seen[_key(text)]}: make each subject different"))
        seen.setdefault(_key(text), letter)
    return problems
