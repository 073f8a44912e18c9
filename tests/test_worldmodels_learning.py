"""World Models' learning check: C trained by CMA-ES through the pipeline's own stages (V, M, C on the
real env, the ONNX export and its evaluation) beats a random policy on a cheap pixel task, and does
not when the objective's sign is flipped (`worldmodels.objective: minimize`, the negative control:
`DAYDREAM_WM_OBJECTIVE=minimize pytest tests/test_worldmodels_learning.py` must fail; it did, see
benchmarks/RESULTS.md).

The task ("side"): each episode one half of the frame is white, left or right at random, and every
step pays action * side for 10 steps. A random policy and any constant action earn 0 on average; to
earn more, C must read the side from V's latent.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

from daydream.config import load_config
from daydream.worldmodels.pipeline import STAGES, WorldModelsRun

pytestmark = pytest.mark.slow

TASK = "DaydreamWorldModelsSide-v0"
EPISODE = 10


class SideEnv(gym.Env):
    metadata = {"render_modes": ("rgb_array",), "render_fps": 10}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.side, self.t = 1, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.side, self.t = int(self.np_random.choice([-1, 1])), 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), float(np.asarray(action)[0]) * self.side, False, self.t >= EPISODE, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[:, :32] = 255 if self.side < 0 else 0
        frame[:, 32:] = 255 if self.side > 0 else 0
        return frame


def _train(tmp_path, objective: str) -> dict:
    if TASK not in gym.registry:
        gym.register(id=TASK, entry_point=SideEnv)
    config = load_config("worldmodels_carracing", [
        f"logdir={tmp_path}", "threads=1", "env.backend=gym", f"env.task={TASK}", "env.render=true",
        "worldmodels.initial_bias=[]", f"worldmodels.objective={objective}", "worldmodels.z_dim=8",
        "worldmodels.rollouts=4", f"worldmodels.rollout_steps={EPISODE}", f"worldmodels.eval_steps={EPISODE}",
        "worldmodels.vae_batch=20", "worldmodels.vae_epochs=20", "worldmodels.vae_lr=0.001", "worldmodels.sigma0=0.5",
        "worldmodels.rnn_hidden=16", "worldmodels.mixtures=2", "worldmodels.rnn_batch=4",
        "worldmodels.rnn_epochs=2", "worldmodels.rnn_seq_len=5", "worldmodels.population=8",
        "worldmodels.candidate_rollouts=4", "worldmodels.generations=8", "worldmodels.eval_tracks=16",
        "worldmodels.random_tracks=16"])
    run = WorldModelsRun(config, progress=False)
    result = run.run_all()
    assert run.done_stages == list(STAGES) and result["runtime"] == "onnx"
    return result


def test_cma_es_controller_beats_random_through_the_pipeline(tmp_path):
    result = _train(tmp_path, os.environ.get("DAYDREAM_WM_OBJECTIVE", "maximize"))
    # random: 0 on average (std of a 16-episode mean about 0.5); the best C earns up to 10 per episode
    assert result["mean_return"] > 3.0, result
    assert result["mean_return"] > result["random_mean_return"] + 2.0, result
