"""Minimal timing loops written directly on a runtime's Python API, with no edgebench code in between.

`make validate` times them, interleaved with edgebench's own measurement of the same artifact, where the
runtime's pip wheel ships no benchmark tool of its own. Each is a standalone script:
`python FILE ARTIFACT INPUT.npy THREADS SECONDS` prints one JSON line with the median latency.
"""
