"""`make mutation`'s last step: the share of mutants of the harness core that the tests kill.

mutmut 3 learns which tests reach which function by watching calls in the pytest process, and `make mutation`
gives it the fast tests only (`-m "not slow"`). Code that runs in child processes (the peak-RSS wrapper's main,
the worker, the isolation around them) is what the slow, whole-run tests exercise: mutants there that the fast
tests left alive are re-run here against those tests, with MUTANT_UNDER_TEST set as mutmut sets it (children
inherit it, and mutmut's trampolines read it).
Survivors listed in tests/equivalent_mutants.txt with a reason are equivalent: they are left out of the score.
Entries are keyed by the mutant's function and a hash of its diff, not by mutmut's number (which drifts when the
code changes); an entry that matches no surviving mutant fails the score until the list is mended.

Usage (from the project root, after `mutmut run`): python tests/mutation_score.py
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "equivalent_mutants.txt"
GOAL = 0.85

# Tests that run a module's code in child processes, for its "no tests" mutants.
# module -> pytest argument lists, tried in order until one fails.
WHOLE_RUNS = ["-m", "slow", "tests/test_runner.py", "tests/test_cli.py"]
SUBPROCESS_TESTS = {
    "bench.measure.peakrss": [["tests/test_isolation.py"], WHOLE_RUNS],
    "bench.worker": [WHOLE_RUNS],
    "bench.isolation": [WHOLE_RUNS],
}


def mutmut_results() -> dict[str, str]:
    """Every mutant's status, from mutmut's own records."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return dict(re.findall(r"^\s+(\S+): (.+)$", out, flags=re.M))


def killed_in_children(mutant: str) -> bool:
    runs = next((r for module, r in SUBPROCESS_TESTS.items() if mutant.startswith(module + ".")), [])
    env = {**os.environ, "MUTANT_UNDER_TEST": mutant}
    for tests in runs:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "--benchmark-disable", "-W", "ignore", *tests], cwd=ROOT / "mutants", env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return True
    return False


def mutant_diff(mutant: str) -> list[str]:
    """The lines a mutant removes and adds (`mutmut show`), without the file headers."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    return [line.rstrip() for line in out.splitlines()
            if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))]


def mutant_key(mutant: str, diff: list[str]) -> str:
    """`function@hash of its diff`: stable when mutmut renumbers a function's mutants after the code changes
    (numbers drifted once and 14 of 34 entries named other mutants, hiding a real gap)."""
    function = mutant.rsplit("__mutmut_", 1)[0]
    return f"{function}@{hashlib.sha256(chr(10).join(diff).encode()).hexdigest()[:12]}"


def equivalent_mutants() -> dict[str, str]:
    """key (`mutant_key`) -> why that mutant is equivalent."""
    listed = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, reason = line.partition(": ")
            listed[key.strip()] = reason.strip()
    return listed


def main() -> int:
    status = mutmut_results()
    if not status:
        print("no mutation results: run `mutmut run` first")
        return 2
    equivalent = equivalent_mutants()
    keys = {m: mutant_key(m, mutant_diff(m)) for m, state in status.items()
            if not (state.startswith("killed") or state == "timeout")}
    for mutant, state in sorted(status.items()):
        if state in ("no tests", "survived") and keys[mutant] not in equivalent \
                and any(mutant.startswith(m + ".") for m in SUBPROCESS_TESTS):
            print(f"  {mutant} ({state}): re-running the whole-run tests", flush=True)
            status[mutant] = "killed (whole-run test)" if killed_in_children(mutant) else f"{state} (whole-run too)"
    counts = Counter(status.values())
    killed = sum(n for state, n in counts.items() if state.startswith("killed") or state == "timeout")
    alive = sorted(m for m, state in status.items() if not (state.startswith("killed") or state == "timeout"))
    explained = [m for m in alive if keys[m] in equivalent]
    unexplained = [m for m in alive if keys[m] not in equivalent]
    scored = len(status) - len(explained)
    score = killed / scored if scored else 1.0
    print(f"mutants: {len(status)}; " + ", ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    print(f"equivalent (tests/equivalent_mutants.txt): {len(explained)}")
    for mutant in unexplained:
        print(f"  not killed: {mutant} ({status[mutant]})   see: mutmut show {mutant}")
    stale = sorted(set(equivalent) - {keys[m] for m in alive})
    for key in stale:  # a listed diff that no surviving mutant has: killed now, or the code moved; mend the list
        print(f"  listed as equivalent but no surviving mutant has this diff: {key} ({equivalent[key]})")
    print(f"mutation score: {killed}/{scored} killed = {score:.1%} (goal {GOAL:.0%})")
    return 0 if score >= GOAL and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
