"""PlaNet's planner (Hafner et al. 2019): the cross-entropy method over action sequences, scored in latent space.

`cem` is the search alone: a diagonal Gaussian over `horizon` actions starts at N(0, I);
each iteration draws `candidates` sequences (clipped to the action box), scores them, and
refits mean and standard deviation to the `top_k` best. The first action of the final
mean is what the agent executes (plus exploration noise), and planning starts afresh at
the next step. `latent_returns` scores candidates the way PlaNet does: roll the RSSM's
prior forward from the current filtered state with each sequence and sum the reward
head's predictions.

`noise` may be given ([iterations, candidates, horizon, action]) so that two
implementations (torch here, numpy + onnxruntime on a robot) can be compared exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class CEMResult:
    mean: Tensor   # [horizon, action]: the refit mean after the last iteration
    std: Tensor    # [horizon, action]
    best_return: float  # the best candidate's score in the last iteration

    @property
    def action(self) -> Tensor:
        """What to execute now: the first step of the mean plan."""
        return self.mean[0]


def cem(score: Callable[[Tensor], Tensor], horizon: int, action_dim: int, candidates: int = 1000, top_k: int = 100,
        iterations: int = 10, low: float = -1.0, high: float = 1.0, noise: Tensor | None = None,
        generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> CEMResult:
    """Maximise `score(actions [candidates, horizon, action]) -> [candidates]` by the cross-entropy method."""
    if not 0 < top_k <= candidates:
        raise ValueError(f"CEM needs 0 < top_k <= candidates, got top_k={top_k}, candidates={candidates}")
    if horizon <= 0 or iterations <= 0:
        raise ValueError(f"CEM needs a positive horizon and number of iterations, got {horizon}, {iterations}")
    shape = (candidates, horizon, action_dim)
    if noise is not None and tuple(noise.shape) != (iterations, *shape):
        raise ValueError(f"noise must have shape {(iterations, *shape)}, got {tuple(noise.shape)}")
    mean = torch.zeros(horizon, action_dim, device=device)
    std = torch.ones(horizon, action_dim, device=device)
    best = float("-inf")
    for i in range(iterations):
        eps = noise[i].to(device) if noise is not None else torch.randn(shape, generator=generator, device=device)
        actions = (mean + std * eps).clamp(low, high)
        returns = score(actions)
        if returns.shape != (candidates,):
            raise ValueError(f"score must return one value per candidate, shape ({candidates},), "
                             f"got {tuple(returns.shape)}")
        elite = actions[returns.topk(top_k).indices]
        mean, std = elite.mean(0), elite.std(0, unbiased=False)
        best = float(returns.max())
    return CEMResult(mean, std, best)


def latent_returns(img_step: Callable[..., dict[str, Tensor]], reward: Callable[[dict[str, Tensor]], Tensor],
                   start: dict[str, Tensor], noise: Tensor | None = None) -> Callable[[Tensor], Tensor]:
    """A CEM score: the summed predicted reward of each action sequence, rolled out from `start` (batch 1).

    With `noise` ([candidates, horizon, ...]: the latent samples' noise), step t calls
    `img_step(state, action, noise[:, t])`, the same noise for every call of the score (every
    CEM iteration); without it, `img_step(state, action)` draws its own.
    """

    def score(actions: Tensor) -> Tensor:
        n, horizon = actions.shape[:2]
        if noise is not None and tuple(noise.shape[:2]) != (n, horizon):
            raise ValueError(f"latent noise must start with (candidates, horizon) = {(n, horizon)}, "
                             f"got {tuple(noise.shape)}")
        state = {k: v.expand(n, *v.shape[1:]) for k, v in start.items()}
        total = torch.zeros(n, device=actions.device)
        for t in range(horizon):
            state = img_step(state, actions[:, t]) if noise is None else img_step(state, actions[:, t], noise[:, t])
            total = total + reward(state).reshape(n)
        return total

    return score
