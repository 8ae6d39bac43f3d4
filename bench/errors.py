"""The one exception type for bad user input: the CLI prints it as one line and exits 2."""


class UsageError(Exception):
    """Bad input (unknown name, bad number, missing file, absent device or package).

    The message must name the bad value and the valid choices; no traceback is shown.
    """
