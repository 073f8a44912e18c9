"""`daydream eval`: load a checkpoint with the config it was trained with and run episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from daydream.agent import Agent
from daydream.config import config_from_dict
from daydream.envs import make_env
from daydream.runtime.acting import AgentActing
from daydream.runtime.checkpoint import load_checkpoint
from daydream.runtime.evaluate import EvalResult, evaluate
from daydream.runtime.video import save_video


def run_eval(checkpoint: Path, episodes: int, video: str | None = None, overrides: Sequence[str] = ()) -> EvalResult:
    payload = load_checkpoint(checkpoint)
    if "config" not in payload or "agent" not in payload:
        raise ValueError(f"{checkpoint} is not a daydream training checkpoint (no config/agent inside)")
    config = config_from_dict(payload["config"], overrides)
    env = make_env(config.env, seed=config.seed + 20_000, robot=config.robot)
    try:
        agent = Agent(config, env.observation_space, env.action_space)
        agent.load_state_dict(payload["agent"])
        result = evaluate(AgentActing(agent), env, episodes, record_video=video is not None, seed=config.seed + 20_000)
    finally:
        env.close()
    if video is not None:
        path = save_video(result.frames, video)
        print(f"video written to {path}")
    return result
