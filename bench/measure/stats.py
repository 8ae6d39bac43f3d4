"""One statistics object over the kept latency samples; every table and file reads it."""

from __future__ import annotations

import math
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
BOOTSTRAP_PER_ROUND = 500  # samples drawn per round and resample; the within-round spread is rescaled to each
# round's own size (`_bootstrap_medians`), so the cap costs no coverage, only time saved


def _sketch(array: np.ndarray, points: int) -> np.ndarray:
    """A round's samples summarised by `points` evenly spaced quantiles: the round itself, at a fixed size."""
    return np.quantile(array, (np.arange(points) + 0.5) / points)


def _bootstrap_medians(rounds: Sequence[Sequence[float]], rng: np.random.Generator,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Medians of a two-level bootstrap: rounds drawn with replacement, then samples within each drawn round.

    Rounds are the independent units on a shared machine (samples within one round share its neighbours),
    so a round that ran slow widens the interval, as it should; resampling samples alone would not see it.
    Each round contributes `m` = at most `BOOTSTRAP_PER_ROUND` draws, so the within-round part of each
    resampled median is the spread of a median of m samples, not of the round's n: it is taken apart from
    the between-round part (the median of the drawn rounds themselves) and rescaled by sqrt(m x mean(1/n)),
    which is exact for the variance of a median. Without that, 500 draws from rounds of 6,000 samples made
    the interval 3.5x too wide; with it, 1.35x (measured in tests/test_stats.py): the two-level bootstrap's
    own excess, since each round's median already carries its samples' noise and the draws within rounds
    count it again (conservative, by at most sqrt(2)).
    """
    arrays = [np.asarray(r, dtype=np.float64) for r in rounds if len(r)]
    if not arrays:
        raise ValueError("an interval of the median needs at least one sample")
    per_round = min(BOOTSTRAP_PER_ROUND, max(len(a) for a in arrays))
    sketches = np.stack([_sketch(a, per_round) for a in arrays])
    picked = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    draws = np.empty((resamples, len(arrays), per_round))
    for slot in range(len(arrays)):
        for j, array in enumerate(arrays):  # the resamples whose slot drew round j take samples from it
            chosen = picked[:, slot] == j
            if chosen.any():
                draws[chosen, slot] = array[rng.integers(0, len(array), size=(int(chosen.sum()), per_round))]
    resampled = np.median(draws.reshape(resamples, -1), axis=1)
    between = np.median(sketches[picked].reshape(resamples, -1), axis=1)  # the drawn rounds, each taken whole
    scale = np.sqrt(per_round * np.mean([1.0 / len(a) for a in arrays]))
    return between + (resampled - between) * scale


def median_interval(rounds: Sequence[Sequence[float]], confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of the median latency from the kept samples of each round (seeded: the same rows, the same interval)."""
    medians = _bootstrap_medians(rounds, np.random.default_rng(seed))
    tail = (1 - confidence) / 2
    return float(np.quantile(medians, tail)), float(np.quantile(medians, 1 - tail))


def fair_binomial_cdf(k: int, n: int) -> float:
    """P(Bin(n, 1/2) <= k), exactly (whole numbers until the one division). The sign test needs nothing more,
    and importing scipy.stats for it cost the harness 1.3 s before every run."""
    return sum(math.comb(n, i) for i in range(max(k, -1) + 1)) / 2 ** n


def order_statistic_interval(values: Sequence[float], confidence: float = 0.95
                             ) -> tuple[float, float, float, float]:
    """Distribution-free interval of a median: (median, low, high, its real coverage), from the sign test.

    With n values sorted, (v_k, v_n+1-k) holds the true median with probability 1 - 2 P(Bin(n, 1/2) < k),
    whatever the distribution, as long as the values are independent. k is the largest that keeps that at or
    above `confidence`. Below 6 values no k reaches 95%: the interval is then (min, max), and its coverage,
    1 - 2^(1-n) (75% for 3 values), is what the caller must report.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    if n == 0:
        raise ValueError("an interval of a median needs at least one value")
    k = 1
    while k + 1 <= n // 2 and 2 * fair_binomial_cdf(k, n) <= 1 - confidence:
        k += 1
    coverage = 1 - 2 * fair_binomial_cdf(k - 1, n) if n > 1 else 0.0
    return float(np.median(ordered)), float(ordered[k - 1]), float(ordered[n - k]), float(coverage)


def interval_coverage(cycles: int, confidence: float = 0.95) -> float:
    """What a paired ratio's interval over this many cycles really holds (`order_statistic_interval`)."""
    return order_statistic_interval(np.arange(max(cycles, 1), dtype=float), confidence)[3]


def widen(ratio: float, low: float, high: float, floor: float) -> tuple[float, float]:
    """The interval with the machine's A/A floor added on each side, in quadrature on the log scale.

    `floor` is the relative spread two processes of one artifact show (0.02: ±2%, `bench.measure.floor`): an
    offset that is the same in every cycle of a pair of processes, so no number of cycles averages it away.
    A ratio within the floor always gets an interval that holds x1.
    """
    if floor <= 0:
        return low, high
    f = np.log1p(floor)
    down, up = np.log(ratio / low), np.log(high / ratio)
    return float(ratio * np.exp(-np.hypot(down, f))), float(ratio * np.exp(np.hypot(up, f)))


def cycle_ratios(base_rounds: Sequence[Sequence[float]], rounds: Sequence[Sequence[float]]) -> list[float]:
    """Each paired cycle's ratio: the baseline's round median over the row's."""
    if len(base_rounds) != len(rounds) or not rounds:
        raise ValueError(f"paired rounds must match one for one: {len(base_rounds)} and {len(rounds)}")
    if not all(len(r) for r in (*base_rounds, *rounds)):
        raise ValueError("a paired ratio needs samples in every round")
    return [float(np.median(np.asarray(b, float)) / np.median(np.asarray(r, float)))
            for b, r in zip(base_rounds, rounds, strict=True)]


def ratio_interval(base_rounds: Sequence[Sequence[float]], rounds: Sequence[Sequence[float]],
                   confidence: float = 0.95, seed: int = 0, paired: bool = False,
                   floor: float = 0.0) -> tuple[float, float, float]:
    """Speed-up of a row over a baseline with its interval: (ratio, low, high).

    `paired`: round i of each was timed in the same round-robin cycle, seconds apart. Each cycle gives one
    ratio, base round median / row round median (a slow stretch that hit both rows of a cycle cancels in
    it), and the speed-up is the median of those ratios, with the sign-test interval of that median
    (`order_statistic_interval`: over 8 cycles the lowest and highest ratio, 99.2%; over 9 the 2nd and 8th, 96.1%).
    Unpaired (two runs, or two rows timed apart): median over median, each side bootstrapped on its own.
    Either way `floor`, the between-process spread an A/A run measured on this machine, is added (`widen`):
    the two sides ran in two processes, and what differs between processes holds for the whole run.
    """
    if paired:
        ratio, low, high, _ = order_statistic_interval(cycle_ratios(base_rounds, rounds), confidence)
    else:
        rng = np.random.default_rng(seed)
        tail = (1 - confidence) / 2
        ratios = _bootstrap_medians(base_rounds, rng) / _bootstrap_medians(rounds, rng)
        ratio = float(np.median(np.concatenate([np.asarray(r, float) for r in base_rounds]))
                      / np.median(np.concatenate([np.asarray(r, float) for r in rounds])))
        low, high = float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))
    low, high = widen(ratio, min(low, ratio), max(high, ratio), floor)
    return ratio, low, high
