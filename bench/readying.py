"""Who may use the cores while a variant's rows get ready (exported, loaded, inferred once), before any timing.

A warm run restores every artifact from the cache, so readying is loading: PyTorch compiled compiles at load
(6-9 s for resnet18: Inductor's cache cannot keep a frozen graph's prepacked weights), the other rows load in
0.1-2.5 s each. Loading two at a time takes the compilation off the other rows' path (`LOAD_JOBS`, measured in
the README). What a row reports as its own stays its own: an export (`export_s`) and a first inference
(`first_ms`, a cold inference's latency) each run alone, while nothing loads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
