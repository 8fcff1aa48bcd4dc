"""Signing and verifying tokens per second: unsubscribe, preference and click tokens.

The click redirect verifies a token per click; a send signs an unsubscribe, a preference
and a click token per recipient and link. Every measurement is CPU time (``process_time``),
interleaved round by round, median of the rounds, so a loaded machine hurts all alike.

  PYTHONPATH=$PWD python benchmarks/bench_tokens.py [--rounds 7] [--n 20000]

Run it on two trees (``--tree A --tree B``) to compare them in one run: each tree's code
is imported in a child process per round, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = ("unsub_sign_many", "unsub_verify", "prefs_sign_many", "prefs_verify",
         "click_sign_many", "click_verify", "click_verify_rotated", "purpose_verify")


def measure(n: int) -> dict[str, float]:
    """Operations per CPU second of each case, in this process's code."""
    from newsletter.audience import tokens
    from newsletter.config import Settings
    from newsletter.delivery.tracking import ClickSigner

    key = "bench-secret-key-0123456789abcdef"
    settings = Settings(secret_key=key, old_secret_keys=[], old_secret_days=90)
    rotated = Settings(secret_key="bench-next-key-0123456789abcdefgh", old_secret_keys=[key],
                       old_secret_days=90)
    ids = list(range(100_000, 100_000 + n))
    sign_many = tokens.Signer(key).many_for_list(3)
    prefs_many = tokens.preferences_signer(settings)
    clicker = ClickSigner(settings)
    checker = ClickSigner(rotated)
    unsub = sign_many(ids)
    prefs = prefs_many(ids)
    clicks = [t for i in ids[: n // 8] for t in clicker.many(4242, i, 8)]
    confirm = [tokens.sign("confirm", settings, i) for i in ids[: n // 4]]
    today = tokens.today()

    def timed(fn, count: int) -> float:  # noqa: ANN001
        start = time.process_time()
        fn()
        return count / (time.process_time() - start)

    return {
        "unsub_sign_many": timed(lambda: sign_many(ids), n),
        "unsub_verify": timed(lambda: [tokens.verify(t, settings) for t in unsub], n),
        "prefs_sign_many": timed(lambda: prefs_many(ids), n),
        "prefs_verify": timed(lambda: [tokens.verify_preferences(t, settings, now_day=today)
                                       for t in prefs], n),
        "click_sign_many": timed(lambda: [clicker.many(4242, i, 8) for i in ids[: n // 8]],
                                 len(clicks)),
        "click_verify": timed(lambda: [clicker.verify(t) for t in clicks], len(clicks)),
        "click_verify_rotated": timed(lambda: [checker.verify(t) for t in clicks],
                                      len(clicks)),
        "purpose_verify": timed(lambda: [tokens.verify("confirm", t, settings)
                                         for t in confirm], len(confirm)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--tree", action="append", default=[],
                        help="a source tree to compare (give two); default: this one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.n)))
        return
    trees = args.tree or [os.getcwd()]
    results: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for _ in range(args.rounds):
        for tree in trees:  # interleaved: each round runs every tree once
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--n", str(args.n)], check=True,
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tree})
            results[tree].append(json.loads(out.stdout))
    load = os.getloadavg()
    print(f"{args.rounds} rounds, n={args.n}, CPU-time ops/s (median), load "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'case':22}" + "".join(f"{os.path.basename(t.rstrip('/')):>18}" for t in trees)
          + ("   ratio" if len(trees) == 2 else ""))
    for case in CASES:
        meds = [statistics.median(r[case] for r in results[t]) for t in trees]
        ratio = f"   {meds[1] / meds[0]:.2f}" if len(meds) == 2 else ""
        print(f"{case:22}" + "".join(f"{m:>18,.0f}" for m in meds) + ratio)


if __name__ == "__main__":
    main()
