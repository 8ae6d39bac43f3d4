"""`make mutation`'s last step: the share of mutants of the harness core that the tests kill.

mutmut 3 learns which tests reach which function by watching calls in the pytest process, and `make mutation`
gives it the fast tests only (`-m "not slow"`). Code that runs in child processes (the peak-RSS wrapper's main,
the worker, the isolation around them) is what the slow, whole-run tests exercise: mutants there that the fast
tests left alive are re-run here against those tests, with MUTANT_UNDER_TEST set as mutmut sets it (children
inherit it, and mutmut's trampolines read it).
Survivors listed in tests/equivalent_mutants.txt with a reason are equivalent: they are left out of the score.

Usage (from the project root, after `mutmut run`): python tests/mutation_score.py
"""

from __future__ import annotations

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


def equivalent_mutants() -> dict[str, str]:
    listed = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(":")
            listed[name.strip()] = reason.strip()
    return listed


def main() -> int:
    status = mutmut_results()
    if not status:
        print("no mutation results: run `mutmut run` first")
        return 2
    equivalent = equivalent_mutants()
    for mutant, state in sorted(status.items()):
        if state in ("no tests", "survived") and mutant not in equivalent \
                and any(mutant.startswith(m + ".") for m in SUBPROCESS_TESTS):
            print(f"  {mutant} ({state}): re-running the whole-run tests", flush=True)
            status[mutant] = "killed (whole-run test)" if killed_in_children(mutant) else f"{state} (whole-run too)"
    counts = Counter(status.values())
    killed = sum(n for state, n in counts.items() if state.startswith("killed") or state == "timeout")
    alive = sorted(m for m, state in status.items() if not (state.startswith("killed") or state == "timeout"))
    explained = [m for m in alive if m in equivalent]
    unexplained = [m for m in alive if m not in equivalent]
    scored = len(status) - len(explained)
    score = killed / scored if scored else 1.0
    print(f"mutants: {len(status)}; " + ", ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    print(f"equivalent (tests/equivalent_mutants.txt): {len(explained)}")
    for mutant in unexplained:
        print(f"  not killed: {mutant} ({status[mutant]})   see: mutmut show {mutant}")
    stale = sorted(set(equivalent) - set(alive))
    if stale:
        print(f"  listed as equivalent but killed or gone: {', '.join(stale)}")
    print(f"mutation score: {killed}/{scored} killed = {score:.1%} (goal {GOAL:.0%})")
    return 0 if score >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
