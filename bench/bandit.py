"""Cumulative regret of Thompson sampling against a fixed 50/50 split on simulated traffic.

    python bench/bandit.py [--requests 10000] [--seeds 20]

Two arms with success probabilities 0.55 and 0.45; every request gets its binary reward at
once. Regret is the expected reward lost against always choosing the better arm:
sum over requests of (0.55 - p of the chosen arm). The same seeds drive both policies' rewards.
Reports mean, standard deviation, min and max over seeds, and the ratio of the means.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import emit, machine

from llmops.routing.bandit import ArmStats, ThompsonSampler

P = {"better": 0.55, "worse": 0.45}


def thompson_regret(requests: int, seed: int) -> float:
    sampler = ThompsonSampler(list(P), seed=seed)
    rng = np.random.default_rng(10_000 + seed)
    stats = {arm: ArmStats() for arm in P}
    regret = 0.0
    for _ in range(requests):
        arm = sampler.choose(stats)
        regret += P["better"] - P[arm]
        stats[arm] = stats[arm].pulled().observed(float(rng.random() < P[arm]))
    return regret


def split_regret(requests: int, seed: int) -> float:
    rng = np.random.default_rng(10_000 + seed)
    worse = int((rng.random(requests) < 0.5).sum())  # a 50/50 split of independent users
    return worse * (P["better"] - P["worse"])


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 2),
        "stdev": round(statistics.stdev(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    thompson = [thompson_regret(args.requests, seed) for seed in range(args.seeds)]
    fixed = [split_regret(args.requests, seed) for seed in range(args.seeds)]
    seconds = time.perf_counter() - started
    emit(
        {
            "benchmark": "bandit",
            "machine": machine(),
            "arms": P,
            "requests": args.requests,
            "seeds": args.seeds,
            "regret_thompson": spread(thompson),
            "regret_fixed_50_50": spread(fixed),
            "regret_ratio_fixed_over_thompson": round(
                statistics.fmean(fixed) / statistics.fmean(thompson), 1
            ),
            "choose_us_per_request": round(seconds / (args.requests * args.seeds) * 1e6, 1),
        }
    )


if __name__ == "__main__":
    main()
