"""Paired accuracy comparisons: every variant is scored on the same test images, so compare image by image.

A row keeps which test images it got right (`pack_correct`: one bit per image, base64, in test-split order).
Two rows are compared by McNemar's exact test on the images exactly one of them got right; a table's
comparisons are Holm-adjusted together; and `detectable_difference` says how large a difference the test set
could have seen (95%, 80% power), so "within noise" has a size.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ALPHA = 0.05
POWER = 0.80


def pack_correct(correct: np.ndarray) -> str:
    """Per-image correctness (bool array) -> compact text: packed bits, base64 (1,000 images: 168 characters)."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def unpack_correct(text: str, count: int) -> np.ndarray:
    """The inverse of `pack_correct` for a test split of `count` images."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    if len(bits) < count or bits[count:].any():
        raise ValueError(f"per-image results hold {len(bits)} bits, not {count} images")
    return bits[:count].astype(bool)


@dataclass(frozen=True)
class PairedComparison:
    """A variant against its control on the same images."""

    images: int
    only_variant: int  # images the variant got right and the control wrong
    only_control: int  # the reverse

    @property
    def discordant(self) -> int:
        return self.only_variant + self.only_control

    @property
    def p_value(self) -> float:
        """McNemar's exact test: two-sided binomial test of the discordant split against 1/2."""
        from scipy import stats  # here, not at import: it costs a measuring process 0.6 s

        if self.discordant == 0:
            return 1.0
        return float(stats.binomtest(self.only_variant, self.discordant, 0.5).pvalue)


def compare_correct(variant: np.ndarray, control: np.ndarray) -> PairedComparison:
    if variant.shape != control.shape:
        raise ValueError(f"paired results cover different images: {variant.shape[0]} and {control.shape[0]}")
    return PairedComparison(images=len(variant), only_variant=int((variant & ~control).sum()),
                            only_control=int((control & ~variant).sum()))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: family-wise error at most ALPHA across one table's comparisons."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


@lru_cache(maxsize=256)
def _rejects(discordant: int, alpha: float) -> np.ndarray:
    """For `discordant` images, which splits k (variant-only count) the exact two-sided test rejects."""
    from scipy import stats  # here, not at import: it costs a measuring process 0.6 s

    k = np.arange(discordant + 1)
    tail = np.minimum(stats.binom.cdf(k, discordant, 0.5), stats.binom.sf(k - 1, discordant, 0.5))
    return np.minimum(1.0, 2 * tail) <= alpha


def mcnemar_power(images: int, discordance: float, difference: float, alpha: float = ALPHA) -> float:
    """Exact power of McNemar's exact test: `discordance` is the share of images the two rows disagree on
    (right/wrong), `difference` the true accuracy difference (at most the discordance)."""
    from scipy import stats  # here, not at import: it costs a measuring process 0.6 s

    if difference > discordance or discordance <= 0:
        return float("nan")
    share = (discordance + difference) / (2 * discordance)  # P(variant-only | discordant)
    counts = np.arange(images + 1)
    weights = stats.binom.pmf(counts, images, discordance)
    live = weights > 1e-12  # discordant counts with any probability
    power = 0.0
    for d, weight in zip(counts[live], weights[live], strict=True):
        reject = _rejects(int(d), alpha)
        power += weight * float(stats.binom.pmf(np.arange(d + 1), d, share)[reject].sum())
    return power


def detectable_difference(images: int, discordance: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest accuracy difference McNemar's exact test detects with `power` on `images` test images when the
    rows disagree on a `discordance` share of them (bisection on the exact power; at most the discordance).

    Where even a difference as large as the discordance is not detected that often, the discordance is
    returned: with so few disagreements, nothing smaller could be seen.
    """
    discordance = min(max(discordance, 1 / images), 1.0)
    if mcnemar_power(images, discordance, discordance, alpha) < power:
        return discordance
    low, high = 0.0, discordance
    for _ in range(30):
        middle = (low + high) / 2
        if mcnemar_power(images, discordance, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return high
