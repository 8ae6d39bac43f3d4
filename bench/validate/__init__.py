"""Checks of the harness itself: its timing against each runtime's own tool (`tools`), and A/A runs that
measure what its intervals promise on this machine (`aa`). `python -m edgebench.bench.validate` runs both."""
