"""One statistics object over the kept latency samples; every table and file reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-iteration latencies in milliseconds (all samples kept, none trimmed)."""

    samples_ms: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("LatencyStats needs at least one sample")

    @cached_property
    def _array(self) -> np.ndarray:
        return np.asarray(self.samples_ms, dtype=np.float64)

    def percentile(self, q: float) -> float:
        """Linear-interpolated percentile, the definition numpy and pytest-benchmark use."""
        return float(np.percentile(self._array, q))

    @property
    def count(self) -> int:
        return len(self.samples_ms)

    @cached_property
    def p50(self) -> float:
        return self.percentile(50)

    @cached_property
    def p90(self) -> float:
        return self.percentile(90)

    @cached_property
    def p99(self) -> float:
        return self.percentile(99)

    @cached_property
    def mean(self) -> float:
        return float(self._array.mean())

    @cached_property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0 for a single sample."""
        return float(self._array.std(ddof=1)) if self.count > 1 else 0.0

    @cached_property
    def min(self) -> float:
        return float(self._array.min())

    @cached_property
    def max(self) -> float:
        return float(self._array.max())

    @cached_property
    def iqr(self) -> float:
        return self.percentile(75) - self.percentile(25)

    def throughput(self, batch: int) -> float:
        """Items per second over the whole timed run: batch x iterations / total time."""
        return batch * 1000.0 / self.mean


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy: honest at 100% or 0%, unlike the normal approximation."""
    if total <= 0:
        raise ValueError("an accuracy interval needs at least one test item")
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def at_chance(predicted: np.ndarray, labels: np.ndarray, classes: int) -> bool:
    """Accuracy within noise of guessing (its 95% Wilson interval holds 1/classes) while the predictions vary:
    a model that works in PyTorch but not here was almost always fed inputs preprocessed another way."""
    if classes < 2 or len(labels) == 0 or len(np.unique(predicted)) < 2:
        return False
    low, high = wilson_interval(int((predicted == labels).sum()), len(labels))
    return low <= 1 / classes <= high


def accuracies_differ(a: tuple[int, int], b: tuple[int, int], z: float = 1.96) -> bool:
    """Whether two accuracies (correct, total) differ beyond noise: a two-proportion z-test at 95%.

    Unpaired: for accuracies scored on different images. The same images are compared image by image instead
    (`bench.measure.paired`), which sees much smaller differences.
    """
    from scipy.stats import norm

    return bool(two_proportion_p(a, b) < 2 * norm.sf(z))  # the same as |difference| / se > z


def two_proportion_p(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Two-sided p of the two-proportion z-test of `accuracies_differ` (1.0 when both are 0% or 100%)."""
    from scipy.stats import norm

    (ca, na), (cb, nb) = a, b
    pooled = (ca + cb) / (na + nb)
    se = np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    if se == 0:
        return 1.0 if ca / na == cb / nb else 0.0
    return float(2 * norm.sf(abs(ca / na - cb / nb) / se))


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_PER_ROUND = 500  # samples drawn per round and resample: enough for a median, cheap at 50,000 samples


def _bootstrap_medians(rounds: Sequence[Sequence[float]], rng: np.random.Generator,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Medians of a two-level bootstrap: rounds drawn with replacement, then samples within each drawn round.

    Rounds are the independent units on a shared machine (samples within one round share its neighbours),
    so a round that ran slow widens the interval, as it should; resampling samples alone would not see it.
    """
    arrays = [np.asarray(r, dtype=np.float64) for r in rounds if len(r)]
    if not arrays:
        raise ValueError("an interval of the median needs at least one sample")
    per_round = min(BOOTSTRAP_PER_ROUND, max(len(a) for a in arrays))
    picked = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    draws = np.empty((resamples, len(arrays), per_round))
    for slot in range(len(arrays)):
        for j, array in enumerate(arrays):  # the resamples whose slot drew round j take samples from it
            chosen = picked[:, slot] == j
            if chosen.any():
                draws[chosen, slot] = array[rng.integers(0, len(array), size=(int(chosen.sum()), per_round))]
    return np.median(draws.reshape(resamples, -1), axis=1)


def median_interval(rounds: Sequence[Sequence[float]], confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of the median latency from the kept samples of each round (seeded: the same rows, the same interval)."""
    medians = _bootstrap_medians(rounds, np.random.default_rng(seed))
    tail = (1 - confidence) / 2
    return float(np.quantile(medians, tail)), float(np.quantile(medians, 1 - tail))


def _round_medians(rounds: Sequence[Sequence[float]], rng: np.random.Generator,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """(rounds x resamples): each round's median under resampling of its own samples."""
    out = np.empty((len(rounds), resamples))
    for j, samples in enumerate(rounds):
        array = np.asarray(samples, dtype=np.float64)
        if not len(array):
            raise ValueError("a paired ratio needs samples in every round")
        draws = rng.integers(0, len(array), size=(resamples, min(BOOTSTRAP_PER_ROUND, len(array))))
        out[j] = np.median(array[draws], axis=1)
    return out


def ratio_interval(base_rounds: Sequence[Sequence[float]], rounds: Sequence[Sequence[float]],
                   confidence: float = 0.95, seed: int = 0, paired: bool = False) -> tuple[float, float, float]:
    """Speed-up of a row over a baseline with its interval: (ratio, low, high).

    Unpaired (two runs, or two rows timed apart): median over median, each side bootstrapped on its own.
    `paired`: round i of each was timed in the same round-robin cycle, seconds apart; the ratio is then the
    median over cycles of base round median / row round median, and its interval comes from drawing the
    same cycles for both sides (then samples within each round). A slow stretch that hit both rows of a
    cycle cancels in that cycle's ratio instead of widening the interval, and a machine that changes
    speed between cycles cannot put the ratio outside the range its cycles gave.
    """
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    if paired:
        if len(base_rounds) != len(rounds) or not rounds:
            raise ValueError(f"paired rounds must match one for one: {len(base_rounds)} and {len(rounds)}")
        per_cycle = _round_medians(base_rounds, rng) / _round_medians(rounds, rng)  # (cycles, resamples)
        picked = rng.integers(0, len(rounds), size=(BOOTSTRAP_RESAMPLES, len(rounds)))
        ratios = np.median(per_cycle[picked, np.arange(BOOTSTRAP_RESAMPLES)[:, None]], axis=1)
        ratio = float(np.median([np.median(np.asarray(b, float)) / np.median(np.asarray(r, float))
                                 for b, r in zip(base_rounds, rounds, strict=True)]))
    else:
        ratios = _bootstrap_medians(base_rounds, rng) / _bootstrap_medians(rounds, rng)
        ratio = float(np.median(np.concatenate([np.asarray(r, float) for r in base_rounds]))
                      / np.median(np.concatenate([np.asarray(r, float) for r in rounds])))
    return ratio, float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))
