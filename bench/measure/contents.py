"""What an exported file really holds, checked against its row's label: integer weights in an int8 file, at
most N distinct values in each clustered layer, and the size the file packs to.

Reads the weight tensors each adapter finds in its own format (`Runtime.stored_weights`); knows no runtime.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INTEGER_KINDS = "iu"  # numpy kinds of integer dtypes (int8, uint8, int4 stored as int8...)
MIN_INTEGER_SHARE = 0.9  # an int8 file whose weights are mostly not integer is not what its label says


@dataclass(frozen=True)
class Contents:
    """The weight tensors of one artifact, summarized."""

    distinct: tuple[int, ...]  # distinct values per weight tensor, in the file's order
    elements: tuple[int, ...]
    stored_bytes: int  # bytes the weight tensors take as stored
    integer_elements: int  # weight elements stored in an integer dtype
    packed_bytes: int  # bytes the weights take with each tensor of <= 256 values as indices + codebook

    @property
    def integer_share(self) -> float:
        total = sum(self.elements)
        return self.integer_elements / total if total else 0.0


def read(weights: Sequence[np.ndarray]) -> Contents:
    """Summarize weight tensors: those with at least two dimensions over 1 (convolution and linear weights; a
    bias or a per-channel scale broadcast to [1, C, 1, 1] is not one)."""
    distinct, elements, stored, integer, packed = [], [], 0, 0, 0
    for array in weights:
        values = np.asarray(array)
        if sum(d > 1 for d in values.shape) < 2:
            continue
        count = len(np.unique(values))
        distinct.append(count)
        elements.append(values.size)
        stored += values.nbytes
        if values.dtype.kind in INTEGER_KINDS:
            integer += values.size
        bits = values.dtype.itemsize * 8
        if count <= 256 and values.size > 256:  # indices of ceil(log2 k) bits plus the k values themselves
            packed += math.ceil((values.size * max(1, math.ceil(math.log2(count))) + count * bits) / 8)
        else:
            packed += values.nbytes
    return Contents(tuple(distinct), tuple(elements), stored, integer, packed)


def packed_file_mb(contents: Contents, file_bytes: int) -> float:
    """The artifact's own size with its weights bit-packed: what a clustered deployment ships."""
    return (file_bytes - contents.stored_bytes + contents.packed_bytes) / 1e6


def clusters_of(compression: str) -> tuple[int, int | None] | None:
    """(N, K) of a `cluster:N[@lastK]` step in the chain (K None: every layer); None without clustering."""
    found = re.search(r"(?:^|\+)cluster:(\d+)(?:@last(\d+))?", compression)
    return (int(found.group(1)), int(found.group(2)) if found.group(2) else None) if found else None


def check(contents: Contents, precision: str, compression: str) -> tuple[bool | None, str]:
    """(whether the file holds what the row's label says, a note of what it holds). None: nothing to check."""
    notes, ok = [], None
    if precision == "int8":
        ok = contents.integer_share >= MIN_INTEGER_SHARE
        notes.append(f"{contents.integer_share:.0%} of weight elements stored as integers")
    clusters = clusters_of(compression)
    if clusters is not None:
        n, last = clusters
        held = sum(d <= n for d in contents.distinct)
        wanted = len(contents.distinct) if last is None else min(last, len(contents.distinct))
        ok = (ok is not False) and held >= wanted
        notes.append(f"{held} of {len(contents.distinct)} weight tensors hold <= {n} values (distinct values: "
                     f"{', '.join(map(str, contents.distinct))})")
    return ok, "; ".join(notes)
