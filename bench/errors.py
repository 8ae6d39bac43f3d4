"""The one exception type for bad user input: the CLI prints it as one line and exits 2."""

import re

TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # colour and bold sequences a library's message may carry


class UsageError(Exception):
    """Bad input (unknown name, bad number, missing file, absent device or package).

    The message must name the bad value and the valid choices; no traceback is shown. Terminal codes quoted from
    a library's message are dropped here, so no command prints them (they reach logs as garbage).
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(TERMINAL_CODES.sub("", str(message)))
