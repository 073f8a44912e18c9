"""Rollouts inside M's dream: C acts on [z, h], M samples the next z at a temperature τ,
predicts the reward, and ends the episode where its done head says so.

A dream starts from the latent of a real first frame (as the paper's dreams do). Each
step draws the episode's end from Bernoulli(sigmoid(done_logit)) before sampling the
next latent, so an M that learnt where episodes terminate also ends its dreams there; a
dream that never ends stops at `max_steps`. τ scales the mixture weights' logits by 1/τ
and the standard deviations by √τ (`MDNRNN.sample`): a higher τ makes the dream harder
to exploit, which the paper's table of virtual and actual scores measures.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from daydream.worldmodels.controller import LinearController
from daydream.worldmodels.mdnrnn import MDNRNN


@dataclasses.dataclass(frozen=True)
class DreamEpisode:
    total: float   # the sum of M's predicted rewards
    steps: int
    ended: bool    # M's done head ended it (not max_steps)


def dream_episode(controller: LinearController, rnn: MDNRNN, start_z: np.ndarray, temperature: float,
                  generator: torch.Generator, max_steps: int) -> DreamEpisode:
    """One episode of `controller` inside `rnn`, from latent `start_z` [z]."""
    if max_steps < 1:
        raise ValueError(f"a dream needs max_steps >= 1, got {max_steps}")
    z = torch.as_tensor(np.asarray(start_z, np.float32))[None]
    state = rnn.initial_state(1)
    total = 0.0
    with torch.no_grad():
        for step in range(1, max_steps + 1):
            action = controller(np.concatenate([z[0].numpy(), state[0][0, 0].numpy()]))
            out, _, state = rnn(z[:, None], torch.as_tensor(action)[None, None], state)
            total += float(out.reward[0, 0])
            if float(torch.sigmoid(out.done_logit[0, 0])) > float(torch.rand(1, generator=generator)):
                return DreamEpisode(total, step, True)
            z = MDNRNN.sample(out, temperature, generator)[:, 0]
    return DreamEpisode(total, max_steps, False)


def dream_score(controller: LinearController, rnn: MDNRNN, starts: list[np.ndarray], first: int, rollouts: int,
                temperature: float, generator: torch.Generator, max_steps: int) -> float:
    """The mean dream return over `rollouts` dreams from starts[first], starts[first + 1], ... (cyclically)."""
    if not starts:
        raise ValueError("no start latents for the dream: run the `encode` stage first")
    return float(np.mean([dream_episode(controller, rnn, starts[(first + k) % len(starts)], temperature, generator,
                                        max_steps).total for k in range(rollouts)]))
