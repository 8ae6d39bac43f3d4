"""Progress while a run works: a live bar on a terminal, one line per phase elsewhere (CI logs)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from edgebench.bench.results import ResultRow


class Reporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._done = 0
        self._total = 0

    def start(self, total: int, title: str) -> None:
        self._total = total
        if self.live:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)
            self._progress.start()
            self._task = self._progress.add_task(title, total=total)
        else:
            self.console.print(title)

    def phase(self, label: str, phase: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{label}: {phase}")
        else:
            count = f"[{self._done + 1}/{self._total}] " if self._total else ""  # no count outside a run
            self.console.print(f"{count}{label}: {phase}", highlight=False)

    name_hosts = False  # a fleet run: each row says which device measured it

    def row_done(self, row: ResultRow) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress.advance(self._task)
        where = f"{row.target} of {row.host}" if self.name_hosts else row.target
        summary = f"{row.format} {row.precision} b{row.batch} on {where}: {row.status}"
        if row.p50_ms is not None:
            summary += f", p50 {row.p50_ms:.2f} ms"
        if row.at_chance:  # the one accuracy problem worth a line of its own while the run goes on
            summary += f"; accuracy {row.accuracy:.1%} is at chance: check the preprocessing"
        if self._progress is not None:
            self._progress.console.print(summary, highlight=False)
        else:
            self.console.print(f"[{self._done}/{self._total}] {summary}", highlight=False)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
