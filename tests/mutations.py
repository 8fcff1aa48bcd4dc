"""Mutated issue files for the mutation fuzz (tests/test_fuzz.py, benchmarks/bench_fuzz.py).

Each file starts as one of the real issues (the samples and the typical-issue fixture)
and gets one to four random mutations, on its bytes: flipped bits, duplicated or deleted
lines, inserted runs of Markdown punctuation, very long lines, Unicode separators and
invisible characters, NULs, and damage to the front matter. ``mutants(seed, count)``
gives the same files for the same seed, so a failure is reproduced from its seed and index.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((REPO / "issues").glob("*.md")), REPO / "tests" / "fixtures" / "typical-issue.md"]

# runs an editor (or a broken export) could produce, and the parser's worst-known patterns
PUNCTUATION = [
    "*", "_", "**", "*_", "_*", "*a", "a*", "**a", "_a", "[", "]", "![", "](", "[a](", "[a]",
    "[]", "(", ")", "<", "<a ", "<!--", "`", "``x", "#", "# ", "\\", "&#", "&amp;", "|", "-",
    "- ", "1. ", "> ", "~", ":", "{{", "}}", "{{name|", "[x](javascript:", "![a](https://x",
]
SEPARATORS = [
    "\u2028", "\u2029", "\x85", "\u00a0", "\u200b", "\u200e", "\u202e", "\ufeff", "\r", "\x0b",
    "\x0c", "\x1c", "\t", "\ufffe", "\U0001f600", "\u0301",
]
FRONT_DAMAGE = [
    b"", b"---\n", b"...\n", b"\tsubject: tab\n", b"subject: 'unclosed\n", b"subject: a: b: c\n",
    b"date: 2026-13-45\n", b"date: [[[[[[\n", b"subject:\n  - nested\n", b"? complex\n",
    b"subject: &a x\nsend_at: *a\n", b"subject: !!binary xx\n", b"%YAML 1.1\n", b"- a\n",
    b"preheader: " + b"x" * 400 + b"\n", b"subject: " + b" " * 20_000 + b"x\n",
]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def flip_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def duplicate_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    start = rng.randrange(len(lines))
    chunk = lines[start : start + rng.randint(1, 6)]
    copies = rng.choice([1, 2, 10, 100, 400])
    return b"\n".join(lines[:start] + chunk * copies + lines[start:])


def delete_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    start = rng.randrange(len(lines))
    return b"\n".join(lines[:start] + lines[start + rng.randint(1, 8) :])


def _insert(rng: random.Random, data: bytes, piece: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at:]


def punctuation_run(rng: random.Random, data: bytes) -> bytes:
    unit = rng.choice(PUNCTUATION)
    count = rng.choice([3, 50, 500, 2_000, 5_000])
    run = unit * count if rng.random() < 0.7 else "".join(
        rng.choice(PUNCTUATION) for _ in range(count // 4 + 1)
    )
    return _insert(rng, data, run.encode("utf-8"))


def long_line(rng: random.Random, data: bytes) -> bytes:
    """A line of up to 100,000 characters: one character or word repeated, or a run that
    closes (stars around a word, spaces before a word: the shapes that made parsers slow)."""
    size = rng.choice([10_000, 50_000, 100_000])
    unit = rng.choice([" ", "a", "word ", "*", "[", "a_b ", "\t"])
    if rng.random() < 0.5:
        body = unit * (size // len(unit)) + rng.choice(["x", ":", "*", "]", "x:"])
    else:
        half = unit * (size // 2 // len(unit))
        body = half + rng.choice(["a", "x: y", " "]) + half
    prefix = rng.choice(["", "# ", "# Lead", "# a", "## ", "- ", "    "])
    return _insert(rng, data, f"\n{prefix}{body}\n".encode())


def unicode_separators(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 10)):
        data = _insert(rng, data, rng.choice(SEPARATORS).encode("utf-8", "surrogatepass"))
    return data


def nuls(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 5)):
        data = _insert(rng, data, b"\x00" * rng.choice([1, 1, 3, 100]))
    return data


def damage_front_matter(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    end = lines.index(b"---", 1) if b"---" in lines[1:] else min(len(lines), 5)
    at = rng.randint(0, end)
    action = rng.randrange(3)
    if action == 0 and end > 0:  # drop a line: the opening or closing '---', or a key
        del lines[rng.randint(0, end)]
    elif action == 1:
        lines.insert(at, rng.choice(FRONT_DAMAGE).rstrip(b"\n"))
    else:  # mangle a value's quoting
        index = rng.randint(1, max(1, end - 1))
        lines[index] = lines[index].replace(b": ", rng.choice([b': "', b": [", b":", b": |"]), 1)
    return b"\n".join(lines)


MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    flip_bytes, duplicate_lines, delete_lines, punctuation_run, long_line, unicode_separators,
    nuls, damage_front_matter,
]


def mutants(seed: int, count: int) -> Iterator[tuple[int, str, bytes]]:
    """(index, what was done, file bytes) for ``count`` mutated issue files."""
    rng = random.Random(seed)
    originals = [path.read_bytes() for path in SOURCES]
    for index in range(count):
        source = rng.randrange(len(originals))
        data = originals[source]
        done = [SOURCES[source].name]
        for _ in range(rng.randint(1, 4)):
            mutation = rng.choice(MUTATIONS)
            data = mutation(rng, data)
            done.append(mutation.__name__)
        yield index, " ".join(done), data
