"""`python -m edgebench.bench` runs the edgebench CLI."""

from edgebench.bench.cli import main
from edgebench.bench.measure.peakrss import exit_now

# The results are written and closed when main returns: skip the interpreter's teardown of torch and the
# runtimes (0.8 s of every `make bench`), as the measuring processes do.
exit_now(main())
