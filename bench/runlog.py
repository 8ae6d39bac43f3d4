"""The run's log file: third-party warnings and child-process output go here, not to the terminal."""

from __future__ import annotations

import logging
import logging.handlers
import threading
import warnings
from pathlib import Path

logger = logging.getLogger("edgebench")


class RunLog:
    """Buffers log records until the run folder exists, then writes them and everything after to run.log."""

    def __init__(self) -> None:
        self._appending = threading.Lock()
        self._buffer = logging.handlers.MemoryHandler(capacity=100000, flushLevel=logging.CRITICAL + 1)
        self._file: logging.FileHandler | None = None
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        for handler in list(root.handlers):  # libraries that configured logging must not print to the terminal
            root.removeHandler(handler)
        root.addHandler(self._buffer)
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        self.path: Path | None = None

    def attach(self, path: Path) -> None:
        self.path = path
        self._file = logging.FileHandler(path)
        self._file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._buffer.setTarget(self._file)
        self._buffer.flush()
        root = logging.getLogger()
        root.removeHandler(self._buffer)
        root.addHandler(self._file)

    def append_file(self, title: str, path: Path) -> None:
        """Copy a child process's output into run.log under a header."""
        if self._file is None or not path.exists():
            return
        with self._appending:  # exports may finish together, each from its own thread
            self._file.flush()
            with open(self.path, "a") as out:
                out.write(f"\n===== {title} =====\n")
                out.write(path.read_text(errors="replace"))

    def close(self) -> None:
        root = logging.getLogger()
        for handler in (self._buffer, self._file):
            if handler is not None:
                handler.close()
                root.removeHandler(handler)
        logging.captureWarnings(False)
