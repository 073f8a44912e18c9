"""C: the linear controller of World Models, a = W_c [z, h] + b_c, and its CMA-ES search.

The controller is deliberately tiny (for CarRacing 867 parameters: (32 + 256) × 3 + 3),
so it is trained by an evolution strategy instead of gradients: `cma` (Hansen's CMA-ES)
proposes a population of parameter vectors, each is scored by the mean return of a few
rollouts (`evaluate(params) -> float`, higher is better), and the search moves toward the
better ones. Actions are squashed into the action box: tanh for steering-like dimensions
in [-1, 1], and (tanh + 1) / 2 for dimensions whose box is [0, 1] (CarRacing's gas and
brake), as in the paper's controller.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LinearController:
    """a = squash(W [z, h] + b); `low`/`high` are the action box (only [-1, 1] and [0, 1] per dimension)."""

    weight: np.ndarray  # [action, z + h]
    bias: np.ndarray    # [action]
    low: np.ndarray
    high: np.ndarray

    @staticmethod
    def size(input_dim: int, action_dim: int) -> int:
        return input_dim * action_dim + action_dim

    @classmethod
    def from_flat(cls, params: np.ndarray, input_dim: int, low: Sequence[float], high: Sequence[float]
                  ) -> LinearController:
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        action_dim = len(low)
        params = np.asarray(params, np.float32)
        if params.shape != (cls.size(input_dim, action_dim),):
            raise ValueError(f"a controller for {input_dim} inputs and {action_dim} actions has "
                             f"{cls.size(input_dim, action_dim)} parameters, got an array of shape {params.shape}")
        for lo, hi in zip(low, high):
            if (lo, hi) not in ((-1.0, 1.0), (0.0, 1.0)):
                raise ValueError(f"LinearController squashes into [-1, 1] or [0, 1] per dimension, not [{lo}, {hi}]; "
                                 "normalise the env's actions first")
        weight = params[:-action_dim].reshape(action_dim, input_dim)
        return cls(weight, params[-action_dim:], low, high)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        y = np.tanh(features @ self.weight.T + self.bias)
        return np.where(self.low == 0.0, (y + 1.0) / 2.0, y).astype(np.float32)


@dataclasses.dataclass
class SearchResult:
    best_params: np.ndarray
    best_score: float
    history: list[dict[str, float]]  # per generation: mean, best, worst score


def cma_search(evaluate: Callable[[np.ndarray], float], dim: int, generations: int, popsize: int = 64,
               sigma0: float = 0.1, seed: int = 0, x0: np.ndarray | None = None,
               on_generation: Callable[[int, dict[str, float]], None] | None = None) -> SearchResult:
    """Maximise `evaluate` over R^dim with CMA-ES; returns the best parameters seen."""
    import cma

    if dim <= 0 or generations <= 0 or popsize < 2:
        raise ValueError(f"cma_search needs dim > 0, generations > 0 and popsize >= 2, got {dim}, {generations}, "
                         f"{popsize}")
    start = np.zeros(dim) if x0 is None else np.asarray(x0, np.float64)
    es = cma.CMAEvolutionStrategy(start, sigma0, {"popsize": popsize, "seed": seed + 1, "verbose": -9})
    best_params, best_score = start.copy(), -np.inf
    history: list[dict[str, float]] = []
    for generation in range(generations):
        candidates = es.ask()
        scores = np.array([float(evaluate(np.asarray(c))) for c in candidates])
        es.tell(candidates, (-scores).tolist())  # cma minimises
        i = int(np.argmax(scores))
        if scores[i] > best_score:
            best_params, best_score = np.asarray(candidates[i]).copy(), float(scores[i])
        record = {"mean": float(scores.mean()), "best": float(scores.max()), "worst": float(scores.min())}
        history.append(record)
        if on_generation is not None:
            on_generation(generation, record)
        log.debug("CMA-ES generation %d: %s", generation, record)
    return SearchResult(best_params, best_score, history)
