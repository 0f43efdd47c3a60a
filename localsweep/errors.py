"""Errors that `python -m localsweep` turns into one line and exit code 2."""


class SweepError(ValueError):
    """A bad sweep file; the message names the file, the key and the reason (exit code 2)."""
