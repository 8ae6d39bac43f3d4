"""Checks of the harness itself: its timing against each runtime's own tool (`tools`), and A/A runs that
measure what its intervals promise on this machine (`aa`). `python -m bench.validate` runs both."""
