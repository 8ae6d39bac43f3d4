"""`python -m bench` runs the edgebench CLI."""

from bench.cli import main

raise SystemExit(main())
