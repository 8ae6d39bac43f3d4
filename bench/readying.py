"""Who may use the cores while a variant's rows get ready (exported, loaded, inferred once), before any timing.

A warm run restores every artifact from the cache, so readying is loading: PyTorch compiled compiles at load
(6-9 s for resnet18: Inductor's cache cannot keep a frozen graph's prepacked weights), the other rows load in
0.1-2.5 s each. Loading two at a time takes the compilation off the other rows' path (`LOAD_JOBS`, measured in
the README). What a row reports as its own stays its own: an export (`export_s`) and a first inference
(`first_ms`, a cold inference's latency) each run alone, while nothing loads.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ReadyGate:
    """A readers-writer gate: up to `loads` loads at once, or one step `alone`. Loads come first: a step waiting
    to run alone lets every load that can start go before it (readying is done sooner, nothing is lost)."""

    def __init__(self, loads: int) -> None:
        if loads < 1:
            raise ValueError(f"loads at once must be at least 1, not {loads}")
        self.loads = loads
        self._changed = threading.Condition()
        self._loading = 0
        self._alone = 0

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._loading == 0 and self._alone == 0)
            self._alone += 1
        try:
            yield
        finally:
            with self._changed:
                self._alone -= 1
                self._changed.notify_all()

    @contextmanager
    def loading(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._loading < self.loads and self._alone == 0)
            self._loading += 1
        try:
            yield
        finally:
            with self._changed:
                self._loading -= 1
                self._changed.notify_all()


class LoadTimes:
    """How long each row took to load the last time it ran on this machine, kept beside the artifact cache.

    Rows are readied longest first: loads share LOAD_JOBS slots, and a long load started last ends readying
    after the rest; started first, it runs beside the short ones. The figures are this machine's own, measured
    by the runs before (`load_s`, contention included); a row never seen goes first, in the order given.
    Measured on resnet18's default run (4 interleaved pairs of warm runs): readying took 11.5-12.6 s longest
    first against 11.9-13.0 s in the runtimes' order; the loads are CPU-bound on 2 cores, so order gains little."""

    FILE = "load_times.json"

    def __init__(self, root: Path) -> None:
        self.path = root / self.FILE
        try:
            self.seconds: dict[str, float] = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: nothing is known, the given order stands
            self.seconds = {}

    @staticmethod
    def key(model: str, compression: str, runtime: str, precision: str, target: str, batch: int,
            threads: int) -> str:
        return f"{model}|{compression}|{runtime}|{precision}|{target}|b{batch}|t{threads}"

    def longest_first(self, keys: list[str]) -> list[int]:
        """Indices of `keys` in the order to ready them: unknown ones first (as given), then by falling load time."""
        return sorted(range(len(keys)), key=lambda i: -self.seconds.get(keys[i], math.inf))

    def record(self, measured: dict[str, float]) -> None:
        """Keep these rows' load times (written aside, then renamed: a reader never sees half a file)."""
        if not measured:
            return
        self.seconds.update(measured)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            aside = self.path.with_name(f"{self.FILE}.{os.getpid()}")
            aside.write_text(json.dumps(self.seconds, indent=0, sort_keys=True))
            aside.replace(self.path)
        except OSError:  # a read-only cache: the order is only an optimisation
            pass
