"""edgebench harness core: configuration, timing, isolation, results and the CLI."""

__version__ = "0.1.0"
