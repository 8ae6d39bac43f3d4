"""Shares given on the command line (THRESHOLD, MIN_ACCURACY, MIN_COSINE): a fraction or a percent with its sign.

One reading for every command, so `5%` and `0.05` mean the same wherever a share is asked for; each caller
checks its own range and says it in its own words.
"""

from __future__ import annotations

import math


def parse_share(text: str) -> float:
    """`0.05` -> 0.05 and `5%` -> 0.05; ValueError for anything that is neither (no range check here)."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    value = float(raw[:-1] if percent else raw)
    if math.isnan(value):
        raise ValueError(f"not a number: {text!r}")
    return value / 100 if percent else value
