"""The World Models stages on any pixel env of the contract (CarRacing first), resumable.

`collect` random rollouts -> `train_vae` (V) -> `encode` every frame to its latent's mean
and log-variance -> `train_rnn` (M) -> `train_controller` (C, by CMA-ES, on the real env
or inside M's dream) -> `evaluate` the controller on `eval_tracks` episodes of the real
env. Everything lives in `<logdir>/worldmodels/`; `stages.json` records the finished
stages, so `run_all` continues at the stage it was in (a stage that was interrupted runs
again; `collect` keeps the rollouts it already wrote).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daydream.atomic import atomic_write_bytes
from daydream.config import Config
from daydream.worldmodels.controller import LinearController, cma_search
from daydream.worldmodels.mdnrnn import MDNRNN
from daydream.worldmodels.vae import ConvVAE, vae_step

log = logging.getLogger(__name__)

STAGES = ("collect", "train-vae", "encode", "train-rnn", "train-controller", "eval")


class WorldModelsRun:
    """One run's files and stages; every stage reads what the earlier ones wrote."""

    def __init__(self, config: Config, progress: bool = True) -> None:
        self.config, self.wm = config, config.worldmodels
        self.directory = Path(config.logdir) / "worldmodels"
        self.rollouts = self.directory / "rollouts"
        self.rollouts.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        torch.manual_seed(config.seed)
        if config.threads > 0:
            torch.set_num_threads(config.threads)

    # -- bookkeeping -----------------------------------------------------------------------

    @property
    def done_stages(self) -> list[str]:
        path = self.directory / "stages.json"
        return json.loads(path.read_text()) if path.exists() else []

    def _mark(self, stage: str) -> None:
        done = [s for s in self.done_stages if s != stage] + [stage]
        atomic_write_bytes(self.directory / "stages.json", json.dumps(done).encode())

    def _bar(self, total: int, what: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=what, disable=not self.progress, dynamic_ncols=True)

    def _env(self, seed: int):
        from daydream.envs import make_env

        env = make_env(self.config.env, seed=seed, robot=self.config.robot)
        if "image" not in env.observation_space.spaces:
            env.close()
            raise ValueError(f"World Models needs image observations; env {self.config.env.task} has "
                             f"{sorted(env.observation_space.spaces)} (set env.obs: pixels)")
        return env

    def _save_npz(self, path: Path, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    def run_all(self) -> dict[str, Any]:
        """Every stage not yet finished, in order; returns the evaluation."""
        for stage in STAGES:
            if stage not in self.done_stages:
                self.run(stage)
        return json.loads((self.directory / "eval.json").read_text())

    def run(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown World Models stage {stage!r}; the stages are {list(STAGES)}")
        log.info("World Models: %s", stage)
        {"collect": self.collect, "train-vae": self.train_vae, "encode": self.encode, "train-rnn": self.train_rnn,
         "train-controller": self.train_controller, "eval": self.evaluate}[stage]()
        self._mark(stage)

    def _require(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the `{stage}` stage first "
                                    f"(daydream worldmodels {stage} --config ...)")
        return path

    # -- V -----------------------------------------------------------------------------------

    def rollout_files(self) -> list[Path]:
        return sorted(self.rollouts.glob("rollout_*.npz"))

    def collect(self) -> None:
        """`rollouts` episodes of uniformly random actions (at most `rollout_steps` steps each)."""
        with self._bar(self.wm.rollouts, "collect") as bar:
            for i in range(self.wm.rollouts):
                path = self.rollouts / f"rollout_{i:06d}.npz"
                if not path.exists():
                    self._save_npz(path, **self._random_rollout(self.config.seed + i))
                bar.update()

    def _random_rollout(self, seed: int) -> dict[str, np.ndarray]:
        env = self._env(seed)
        rng = np.random.default_rng(seed)
        low, high = env.action_space.low, env.action_space.high
        frames, actions, rewards, dones = [], [], [], []
        try:
            obs, _ = env.reset(seed=seed)
            for _ in range(self.wm.rollout_steps):
                action = rng.uniform(low, high).astype(np.float32)
                frames.append(obs["image"])
                actions.append(action)
                obs, reward, terminated, truncated, _ = env.step(action)
                rewards.append(reward)
                dones.append(terminated or truncated)
                if terminated or truncated:
                    break
        finally:
            env.close()
        return {"frames": np.stack(frames), "actions": np.stack(actions),
                "rewards": np.asarray(rewards, np.float32), "dones": np.asarray(dones, bool)}

    def _vae(self) -> ConvVAE:
        return ConvVAE(self.wm.z_dim, self.wm.kl_tolerance)

    def train_vae(self) -> None:
        files = self.rollout_files()
        if not files:
            raise FileNotFoundError(f"no rollouts in {self.rollouts}: run the `collect` stage first")
        vae = self._vae()
        optimiser = torch.optim.Adam(vae.parameters(), lr=self.wm.vae_lr)
        rng = np.random.default_rng(self.config.seed)
        for epoch in range(self.wm.vae_epochs):
            # frames of up to 50 rollouts at a time: the full data set does not fit in memory
            order = rng.permutation(len(files))
            with self._bar(len(files), f"V epoch {epoch + 1}/{self.wm.vae_epochs}") as bar:
                for start in range(0, len(order), 50):
                    group = [files[i] for i in order[start:start + 50]]
                    frames = np.concatenate([np.load(f)["frames"] for f in group])
                    frames = frames[rng.permutation(len(frames))]
                    for b in range(0, len(frames), self.wm.vae_batch):
                        metrics = vae_step(vae, optimiser, torch.from_numpy(frames[b:b + self.wm.vae_batch]))
                    bar.update(len(group))
                    bar.set_postfix(recon=f"{metrics['recon']:.1f}", kl=f"{metrics['kl']:.1f}")
        torch.save(vae.state_dict(), self.directory / "vae.pt")

    def encode(self) -> None:
        """Each rollout's latent means and log-variances beside its actions, rewards and ends."""
        vae = self._vae()
        vae.load_state_dict(torch.load(self._require(self.directory / "vae.pt", "train-vae")))
        series = self.directory / "series"
        series.mkdir(exist_ok=True)
        with torch.no_grad(), self._bar(len(self.rollout_files()), "encode") as bar:
            for f in self.rollout_files():
                data = np.load(f)
                mean, logvar = vae.encode(torch.from_numpy(data["frames"]))
                self._save_npz(series / f.name, mean=mean.numpy(), logvar=logvar.numpy(), actions=data["actions"],
                               rewards=data["rewards"], dones=data["dones"])
                bar.update()

    # -- M -----------------------------------------------------------------------------------

    def _rnn(self, action_dim: int) -> MDNRNN:
        return MDNRNN(self.wm.z_dim, action_dim, self.wm.rnn_hidden, self.wm.mixtures)

    def train_rnn(self) -> None:
        files = sorted(self._require(self.directory / "series", "encode").glob("*.npz"))
        data = [dict(np.load(f)) for f in files]
        length = min(self.wm.rnn_seq_len, min(len(d["actions"]) for d in data) - 1)
        if length < 1:
            raise ValueError("the rollouts are too short to train M: collect rollouts of at least 2 steps")
        rnn = self._rnn(data[0]["actions"].shape[-1])
        optimiser = torch.optim.Adam(rnn.parameters(), lr=self.wm.rnn_lr)
        rng = np.random.default_rng(self.config.seed)
        steps = max(1, self.wm.rnn_epochs * len(data) // self.wm.rnn_batch)
        with self._bar(steps, "M") as bar:
            for _ in range(steps):
                batch = self._sequences(data, length, rng)
                losses = rnn.losses(**batch)
                optimiser.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(rnn.parameters(), 1.0)
                optimiser.step()
                bar.update()
                bar.set_postfix(nll=f"{float(losses['nll']):.3f}")
        torch.save(rnn.state_dict(), self.directory / "rnn.pt")

    def _sequences(self, data: list[dict[str, np.ndarray]], length: int, rng: np.random.Generator
                   ) -> dict[str, torch.Tensor]:
        """A batch of sub-sequences, with z drawn from each frame's posterior (as the paper does per epoch)."""
        rows = []
        for i in rng.integers(0, len(data), self.wm.rnn_batch):
            d = data[i]
            start = int(rng.integers(0, len(d["actions"]) - length))
            sl = slice(start, start + length + 1)
            z = d["mean"][sl] + np.exp(0.5 * d["logvar"][sl]) * rng.standard_normal(d["mean"][sl].shape)
            rows.append((z.astype(np.float32), d["actions"][sl][:-1], d["rewards"][sl][:-1], d["dones"][sl][:-1]))
        z, a, r, done = (torch.from_numpy(np.stack(x)) for x in zip(*rows))
        return {"z": z[:, :-1], "action": a, "next_z": z[:, 1:], "done": done, "reward": r}

    # -- C -----------------------------------------------------------------------------------

    def _models(self) -> tuple[ConvVAE, MDNRNN, int]:
        vae = self._vae()
        vae.load_state_dict(torch.load(self._require(self.directory / "vae.pt", "train-vae")))
        state = torch.load(self._require(self.directory / "rnn.pt", "train-rnn"))
        action_dim = state["lstm.weight_ih_l0"].shape[1] - self.wm.z_dim
        rnn = self._rnn(action_dim)
        rnn.load_state_dict(state)
        return vae.eval(), rnn.eval(), action_dim

    def _real_return(self, controller: LinearController, vae: ConvVAE, rnn: MDNRNN, seed: int,
                     max_steps: int, patience: int = 0) -> float:
        """One episode's return; with `patience` > 0 it ends after that many steps without a positive reward."""
        env = self._env(seed)
        total, since_progress = 0.0, 0
        try:
            obs, _ = env.reset(seed=seed)
            state = rnn.initial_state(1)
            h = torch.zeros(1, self.wm.rnn_hidden)
            with torch.no_grad():
                for _ in range(max_steps):
                    z = vae.encode(torch.from_numpy(np.array(obs["image"][None])))[0]
                    action = controller(np.concatenate([z[0].numpy(), h[0].numpy()]))
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    _, out, state = rnn(z[:, None], torch.from_numpy(action)[None, None], state)
                    h = out[:, 0]
                    since_progress = 0 if reward > 0 else since_progress + 1
                    if terminated or truncated or (patience > 0 and since_progress >= patience):
                        break
        finally:
            env.close()
        return total

    def _dream_return(self, controller: LinearController, rnn: MDNRNN, start_z: np.ndarray,
                      generator: torch.Generator, max_steps: int) -> float:
        z = torch.from_numpy(start_z)[None]
        state = rnn.initial_state(1)
        h = torch.zeros(1, self.wm.rnn_hidden)
        total = 0.0
        with torch.no_grad():
            for _ in range(max_steps):
                action = controller(np.concatenate([z[0].numpy(), h[0].numpy()]))
                out, hs, state = rnn(z[:, None], torch.from_numpy(action)[None, None], state)
                h = hs[:, 0]
                total += float(out.reward[0, 0])
                if float(torch.sigmoid(out.done_logit[0, 0])) > torch.rand(1, generator=generator).item():
                    break
                z = MDNRNN.sample(out, self.wm.temperature, generator)[:, 0]
        return total

    def train_controller(self) -> None:
        vae, rnn, action_dim = self._models()
        env = self._env(self.config.seed)
        low, high = env.action_space.low, env.action_space.high
        env.close()
        input_dim = self.wm.z_dim + self.wm.rnn_hidden
        starts = [np.load(f)["mean"][0] for f in sorted((self.directory / "series").glob("*.npz"))]
        generator = torch.Generator().manual_seed(self.config.seed)
        calls = iter(range(10**12))
        history: list[dict[str, float]] = []
        rollouts = self.wm.candidate_rollouts

        def score(params: np.ndarray) -> float:
            controller = LinearController.from_flat(params, input_dim, low, high)
            call = next(calls)
            if self.wm.train_in_dream:
                return float(np.mean([self._dream_return(controller, rnn, starts[(call + k) % len(starts)], generator,
                                                         self.wm.rollout_steps)
                                      for k in range(rollouts)]))
            # every candidate of a generation drives the same tracks (a fair comparison); new tracks each
            # generation, so C does not overfit a few of them
            first = self.config.seed + 1000 + len(history) * rollouts
            return float(np.mean([self._real_return(controller, vae, rnn, first + k, self.wm.rollout_steps,
                                                    self.wm.patience)
                                  for k in range(rollouts)]))

        size = LinearController.size(input_dim, action_dim)
        with self._bar(self.wm.generations, "C (CMA-ES)") as bar:
            def on_generation(generation: int, record: dict[str, float]) -> None:
                history.append(record)
                bar.update()
                bar.set_postfix(mean=f"{record['mean']:.1f}", best=f"{record['best']:.1f}")

            result = cma_search(score, size, self.wm.generations, self.wm.population, self.wm.sigma0,
                                self.config.seed, x0=self._initial_params(size, action_dim),
                                on_generation=on_generation)
        np.save(self.directory / "controller.npy", result.best_params.astype(np.float32))
        atomic_write_bytes(self.directory / "controller_history.json", json.dumps(history).encode())

    def _initial_params(self, size: int, action_dim: int) -> np.ndarray:
        """CMA-ES's starting mean: zero weights and `initial_bias` (zeros when empty)."""
        x0 = np.zeros(size)
        if self.wm.initial_bias:
            if len(self.wm.initial_bias) != action_dim:
                raise ValueError(f"worldmodels.initial_bias has {len(self.wm.initial_bias)} entries, the env has "
                                 f"{action_dim} action dimensions; give one per dimension or []")
            x0[-action_dim:] = self.wm.initial_bias
        return x0

    def evaluate(self) -> dict[str, Any]:
        """The controller's returns over `eval_tracks` episodes (tracks) of the real env."""
        vae, rnn, _ = self._models()
        params = np.load(self._require(self.directory / "controller.npy", "train-controller"))
        env = self._env(self.config.seed)
        low, high = env.action_space.low, env.action_space.high
        env.close()
        controller = LinearController.from_flat(params, self.wm.z_dim + self.wm.rnn_hidden, low, high)
        returns = []
        with self._bar(self.wm.eval_tracks, "eval") as bar:
            for k in range(self.wm.eval_tracks):
                returns.append(self._real_return(controller, vae, rnn, self.config.seed + 100_000 + k,
                                                 self.wm.eval_steps))
                bar.update()
        result = {"tracks": len(returns), "mean_return": float(np.mean(returns)),
                  "std_return": float(np.std(returns)), "returns": returns,
                  "trained_in_dream": self.wm.train_in_dream, "temperature": self.wm.temperature}
        atomic_write_bytes(self.directory / "eval.json", json.dumps(result, indent=1).encode())
        return result
