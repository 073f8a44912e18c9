"""Single-process training: collect with the agent, train at the configured ratio, evaluate,
checkpoint, and resume after a crash.

Layout of a run's logdir: `config.yaml` (the resolved config), `checkpoint.pt`,
`replay/` (durable chunks), `metrics.jsonl`, `tb/` (TensorBoard) and `videos/`.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from daydream.agent import Agent
from daydream.config import Config, ConfigError, save_config_yaml
from daydream.envs import make_env
from daydream.replay import Replay
from daydream.runtime.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from daydream.runtime.evaluate import batch_obs, evaluate
from daydream.runtime.metrics import MetricsWriter
from daydream.runtime.train_ratio import TrainRatio
from daydream.runtime.video import save_video

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def random_action(space, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random action under the env contract (one-hot for Discrete)."""
    if hasattr(space, "n"):
        return np.eye(int(space.n), dtype=np.float32)[rng.integers(int(space.n))]
    return rng.uniform(-1.0, 1.0, space.shape).astype(np.float32)


def zero_action(space) -> np.ndarray:
    return np.zeros(int(space.n) if hasattr(space, "n") else space.shape, np.float32)


def check_train_config(config: Config) -> None:
    r, t = config.replay, config.train
    if t.prefill < r.batch_length:
        raise ConfigError(f"train.prefill ({t.prefill}) must be at least replay.batch_length ({r.batch_length}) so a batch can be sampled")
    if t.train_ratio <= 0:
        raise ConfigError(f"train.train_ratio must be positive, got {t.train_ratio}")


class Trainer:
    """Owns the env, agent, replay and metrics of one run; `run()` trains to `train.steps`."""

    def __init__(self, config: Config, resume: bool = False) -> None:
        check_train_config(config)
        self.config = config
        self.logdir = Path(config.logdir)
        ckpt = self.logdir / CHECKPOINT_NAME
        if ckpt.exists() and not resume:
            raise FileExistsError(f"{self.logdir} already holds a run; pass --resume to continue it or choose another logdir")
        self.logdir.mkdir(parents=True, exist_ok=True)
        save_config_yaml(config, self.logdir / "config.yaml")
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.env = make_env(config.env, seed=config.seed, robot=config.robot)
        self.eval_env = make_env(config.env, seed=config.seed + 10_000, robot=config.robot)
        self.agent = Agent(config, self.env.observation_space, self.env.action_space)
        r = config.replay
        self.replay = Replay(r.directory or self.logdir / "replay", r.capacity, r.chunk_size, r.batch_size, r.batch_length,
                             seed=config.seed, max_open_files=r.max_open_files)
        self.ratio = TrainRatio(config.train.train_ratio, r.batch_size * r.batch_length, config.train.prefill)
        self.metrics = MetricsWriter(self.logdir)
        self.env_steps = 0
        self.episodes = 0
        if resume and ckpt.exists():
            payload = load_checkpoint(ckpt)
            self.agent.load_state_dict(payload["agent"])
            self.env_steps, self.episodes = int(payload["env_steps"]), int(payload["episodes"])
            log.info("resumed %s at env step %d, update %d, replay holds %d steps", self.logdir, self.env_steps, self.agent.updates, len(self.replay))
        self._dataset = None

    def batches(self):
        if self._dataset is None:
            self._dataset = iter(self.replay.dataset(self.config.replay.prefetch))
        return self._dataset

    def save(self) -> None:
        self.replay.flush()
        save_checkpoint(self.logdir / CHECKPOINT_NAME, {
            "agent": self.agent.state_dict(),
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "config": self.config.to_dict(),
        })

    def run(self) -> dict[str, float]:
        cfg = self.config.train
        progress = _progress(cfg.steps, self.env_steps, cfg.progress)
        obs, _ = self.env.reset(seed=self.config.seed + self.episodes)
        action = zero_action(self.env.action_space)
        reward, state = 0.0, None
        episode_return, episode_length = 0.0, 0
        recent_returns: deque[float] = deque(maxlen=10)
        train_sums: dict[str, float] = {}
        train_count = 0
        last = {"log": self.env_steps, "eval": self.env_steps, "ckpt": self.env_steps, "video": self.env_steps}
        tick, tick_steps = time.time(), self.env_steps
        summary: dict[str, float] = {}
        try:
            while self.env_steps < cfg.steps:
                self.replay.add({**obs, "action": action, "reward": np.float32(reward)})
                if obs["is_last"]:
                    self.episodes += 1
                    recent_returns.append(episode_return)
                    self.metrics.write("episode", self.env_steps, {"return": episode_return, "length": episode_length})
                    obs, _ = self.env.reset()
                    action, reward, state = zero_action(self.env.action_space), 0.0, None
                    episode_return, episode_length = 0.0, 0
                    continue
                if self.env_steps < cfg.prefill:
                    action = random_action(self.env.action_space, self.rng)
                else:
                    batch_action, state = self.agent.policy(batch_obs(obs), state)
                    action = batch_action[0]
                obs, reward, _, _, _ = self.env.step(action)
                episode_return += float(reward)
                episode_length += 1
                self.env_steps += 1
                progress.update(1)

                for _ in range(self.ratio.owed(self.env_steps, self.agent.updates)):
                    step_metrics = self.agent.train(next(self.batches()))
                    for k, v in step_metrics.items():
                        train_sums[k] = train_sums.get(k, 0.0) + float(v)
                    train_count += 1

                if self.env_steps - last["log"] >= cfg.log_every:
                    last["log"] = self.env_steps
                    now = time.time()
                    rates = {"env_steps_per_s": (self.env_steps - tick_steps) / max(now - tick, 1e-9), "updates": self.agent.updates,
                             "replay_steps": len(self.replay)}
                    tick, tick_steps = now, self.env_steps
                    means = {k: v / train_count for k, v in train_sums.items()} if train_count else {}
                    self.metrics.write("train", self.env_steps, {**means, **rates})
                    train_sums, train_count = {}, 0
                    postfix = {"sps": f"{rates['env_steps_per_s']:.0f}"}
                    if recent_returns:
                        postfix["return"] = f"{np.mean(recent_returns):.1f}"
                    if "model_loss" in means:
                        postfix["model"] = f"{means['model_loss']:.2f}"
                    progress.set_postfix(postfix)
                if cfg.eval_every and self.env_steps - last["eval"] >= cfg.eval_every:
                    last["eval"] = self.env_steps
                    want_video = bool(cfg.video_every) and self.env_steps - last["video"] >= cfg.video_every
                    summary = self.evaluate(video=want_video)
                    if want_video:
                        last["video"] = self.env_steps
                if self.env_steps - last["ckpt"] >= cfg.checkpoint_every:
                    last["ckpt"] = self.env_steps
                    self.save()
        except KeyboardInterrupt:
            log.warning("interrupted at env step %d; saving a checkpoint", self.env_steps)
            self.save()
            raise
        finally:
            progress.close()
        if cfg.eval_episodes:
            summary = self.evaluate(video=bool(cfg.video_every))
        self.save()
        self.metrics.flush()
        return summary

    def evaluate(self, video: bool = False) -> dict[str, float]:
        result = evaluate(self.agent, self.eval_env, self.config.train.eval_episodes, record_video=video)
        summary = {"return": result.mean_return, "length": float(np.mean(result.lengths))}
        self.metrics.write("eval", self.env_steps, summary)
        log.info("eval at %d env steps: return %.1f", self.env_steps, summary["return"])
        if video and result.frames:
            save_video(result.frames, self.logdir / "videos" / f"eval_{self.env_steps:08d}.mp4")
        return summary

    def close(self) -> None:
        self.replay.close()
        self.metrics.close()
        for env in (self.env, self.eval_env):
            env.close()


def train(config: Config, resume: bool = False) -> dict[str, float]:
    trainer = Trainer(config, resume=resume)
    try:
        return trainer.run()
    finally:
        trainer.close()


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, smoothing=0.1)

