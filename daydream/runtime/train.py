"""Single-process training: collect with the agent, train at the configured ratio, evaluate,
checkpoint, and resume after a crash.

Layout of a run's logdir: `config.yaml` (the resolved config), `checkpoint.pt`,
`replay/` (durable chunks), `metrics.jsonl`, `tb/` (TensorBoard) and `videos/`.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

from daydream.agent import Agent
from daydream.config import Config
from daydream.envs import make_env
from daydream.envs.contract import random_action, zero_action
from daydream.replay.spec import Spec
from daydream.runtime.acting import AgentActing, batch_obs
from daydream.runtime.evaluate import evaluate
from daydream.runtime.metrics import Every, Mean, MetricsWriter, Rates
from daydream.runtime.run_dir import TrainingRun, open_replay, open_run, progress_bar, train_ratio
from daydream.runtime.video import save_video

log = logging.getLogger(__name__)


class Trainer(TrainingRun):
    """Owns the env, agent, replay and metrics of one run; `run()` trains to `train.steps`."""

    def __init__(self, config: Config, resume: bool = False) -> None:
        self.config = config
        self.logdir, payload = open_run(config, resume)
        self.rng = np.random.default_rng(config.seed)
        self.env = make_env(config.env, seed=config.seed, robot=config.robot)
        self.eval_env = make_env(config.env, seed=config.seed + 10_000, robot=config.robot)
        self.agent = Agent(config, self.env.observation_space, self.env.action_space)
        spec = Spec.of_spaces(self.env.observation_space, self.env.action_space)
        self.replay = open_replay(config, self.logdir, spec)
        self.ratio = train_ratio(config)
        self.metrics = MetricsWriter(self.logdir)
        self.env_steps = 0
        self.episodes = 0
        if payload is not None:
            self.agent.load_state_dict(payload["agent"])
            self.env_steps, self.episodes = int(payload["env_steps"]), int(payload["episodes"])
            log.info("resumed %s at env step %d, update %d, replay holds %d steps", self.logdir, self.env_steps,
                     self.agent.updates, len(self.replay))

    def checkpoint_state(self) -> dict[str, int]:
        return {"env_steps": self.env_steps, "episodes": self.episodes}

    def run(self) -> dict[str, float]:
        cfg = self.config.train
        progress = progress_bar(cfg.steps, self.env_steps, cfg.progress)
        obs, _ = self.env.reset(seed=self.config.seed + self.episodes)
        action = zero_action(self.env.action_space)
        reward, state = 0.0, None
        episode_return, episode_length = 0.0, 0
        recent_returns: deque[float] = deque(maxlen=10)
        train_means, rates = Mean(), Rates(env_steps=self.env_steps)
        log_due, ckpt_due = Every(cfg.log_every, self.env_steps), Every(cfg.checkpoint_every, self.env_steps)
        eval_due, video_due = Every(cfg.eval_every, self.env_steps), Every(cfg.video_every, self.env_steps)
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
                    train_means.add(self.agent.train(next(self.batches())))

                if log_due(self.env_steps):
                    means = train_means.take()
                    step_rates = rates.take(env_steps=self.env_steps)
                    self.metrics.write("train", self.env_steps, {**means, **step_rates, "updates": self.agent.updates,
                                                                 "replay_steps": len(self.replay)})
                    postfix = {"sps": f"{step_rates['env_steps_per_s']:.0f}"}
                    if recent_returns:
                        postfix["return"] = f"{np.mean(recent_returns):.1f}"
                    if "model_loss" in means:
                        postfix["model"] = f"{means['model_loss']:.2f}"
                    progress.set_postfix(postfix)
                if cfg.eval_every and eval_due(self.env_steps):
                    want_video = bool(cfg.video_every) and video_due(self.env_steps)
                    summary = self.evaluate(video=want_video)
                if ckpt_due(self.env_steps):
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
        result = evaluate(AgentActing(self.agent), self.eval_env, self.config.train.eval_episodes, record_video=video,
                          mode=self.config.train.eval_mode)
        summary = {"return": result.mean_return, "length": float(np.mean(result.lengths)), **result.mean_diagnostics()}
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
