"""A checklist of time-limited steps, each its own process, whose verdicts reach the disk as each step ends.

Made for short loans of a machine (a GPU lent for minutes, a command cut at 10): a kill at any moment leaves
every finished step's verdict in the report, and a second run in the same folder does only what is not settled
yet (steps `proven` or `not available` are kept; `failed` and unfinished ones run again). A step is a command;
it states its verdict by writing `steps/<name>.json` (`write_verdict`), and one that does not, or overruns its
limit, is `failed` with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edgebench.bench.isolation import PROJECT_ROOT, project_env

STATUSES = ("proven", "failed", "not available")
SETTLED = ("proven", "not available")  # kept by a second run; "failed" runs again
REPORT = "report.md"


@dataclass(frozen=True)
class Step:
    name: str
    command: tuple[str, ...]  # run from the project root with the project on PYTHONPATH
    limit_s: float


@dataclass
class Verdict:
    status: str  # one of STATUSES
    detail: str  # one line: what was shown, or why not
    body: str = ""  # Markdown for the report (a table), optional
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown verdict {self.status!r}: expected one of {', '.join(STATUSES)}")

    def line(self, name: str) -> str:
        return f"{self.status.upper():<13} {name}: {self.detail} ({self.seconds:.0f} s)"


def verdict_path(out: Path, name: str) -> Path:
    return out / "steps" / ("".join(c if c.isalnum() else "-" for c in name.lower()) + ".json")


def write_verdict(out: Path, name: str, verdict: Verdict) -> None:
    """What a step's process calls as its last act (and the runner, for a step that could not)."""
    path = verdict_path(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(verdict)))
    tmp.replace(path)  # whole or absent: a kill mid-write leaves no half verdict


def read_verdict(out: Path, name: str) -> Verdict | None:
    try:
        return Verdict(**json.loads(verdict_path(out, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def run_steps(steps: Sequence[Step], out: Path, title: str,
              say: Callable[[str], None] = lambda line: print(line, flush=True)) -> list[tuple[Step, Verdict]]:
    """Each step in order, each within its limit; the report gets each verdict as soon as it is known."""
    out.mkdir(parents=True, exist_ok=True)
    report = out / REPORT
    if not report.exists():
        report.write_text(f"# {title}\n\nSteps in order, each appended when it ended; a later try in the same "
                          "folder appends the steps it ran again.\n")
    results = []
    for step in steps:
        earlier = read_verdict(out, step.name)
        if earlier is not None and earlier.status in SETTLED:
            say(earlier.line(step.name) + " [from an earlier try]")
            results.append((step, earlier))
            continue
        verdict_path(out, step.name).unlink(missing_ok=True)
        verdict = _run(step, out)
        write_verdict(out, step.name, verdict)
        with report.open("a") as handle:
            handle.write(f"\n## {step.name}: {verdict.status}\n\n{verdict.detail} ({verdict.seconds:.0f} s)\n"
                         + (f"\n{verdict.body.rstrip()}\n" if verdict.body else ""))
        say(verdict.line(step.name))
        results.append((step, verdict))
    return results


def _run(step: Step, out: Path) -> Verdict:
    t0 = time.monotonic()
    proc = subprocess.Popen(step.command, cwd=PROJECT_ROOT, env=project_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=step.limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the step and everything it started
        proc.communicate()
        return Verdict("failed", f"stopped at its limit of {step.limit_s:g} s", seconds=time.monotonic() - t0)
    seconds = time.monotonic() - t0
    (out / "steps").mkdir(parents=True, exist_ok=True)
    verdict_path(out, step.name).with_suffix(".log").write_text(output)
    verdict = read_verdict(out, step.name)
    if verdict is None:
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
        return Verdict("failed", f"exited with code {proc.returncode} without a verdict: {last[:300]}",
                       seconds=seconds)
    verdict.seconds = seconds
    return verdict
