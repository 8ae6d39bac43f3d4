"""`python -m bench` runs the edgebench CLI."""

from edgebench.bench.cli import main

raise SystemExit(main())
