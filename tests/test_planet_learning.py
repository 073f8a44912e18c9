"""PlaNet's CPU learning check: planning over the learned model beats random actions on Pendulum.

The negative control is the same run with the planner's objective flipped
(`behavior.planner.objective=minimize`: CEM seeks the lowest predicted return); it must
fail `check_learned`. It is not run in CI (it costs as much as the check); run it by hand:

    python -c "import sys; sys.path[:0] = ['tests']; import test_planet_learning as t; \\
               t.run_check('/tmp/planet_control', 'behavior.planner.objective=minimize')"

(benchmarks/RESULTS.md records its outcome.)
"""

from __future__ import annotations

import numpy as np
import pytest

from daydream.config import load_config
from daydream.runtime.metrics import read_metrics
from test_train import random_returns

MARGIN = 300.0  # above the random policy's mean return (about -1250 per 200-step episode)


def run_check(logdir: str, *overrides: str) -> tuple[float, float, list[float]]:
    """Train planet_pendulum and assert it learned; returns (eval return, random baseline, training episodes)."""
    from daydream.runtime.train import train

    config = load_config("planet_pendulum", [f"logdir={logdir}", "train.progress=false", "threads=1", *overrides])
    summary = train(config)
    baseline = float(np.mean(random_returns(10, seed=123)))
    episodes = [row["return"] for row in read_metrics(f"{logdir}/metrics.jsonl", "episode")]
    print(f"random {baseline:.0f}, training episodes {[round(e) for e in episodes]}, eval {summary['return']:.0f}")
    check_learned(summary["return"], baseline, episodes)
    return summary["return"], baseline, episodes


def check_learned(eval_return: float, baseline: float, episodes: list[float]) -> None:
    assert baseline < -1000, "the random baseline moved; the margin assumes about -1250"
    assert eval_return > baseline + MARGIN, (eval_return, baseline)
    assert float(np.mean(episodes[-3:])) > baseline + MARGIN / 2, (episodes[-3:], baseline)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_planet_learns_pendulum(tmp_path):
    run_check(str(tmp_path))
