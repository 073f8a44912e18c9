"""The World Models stages on any pixel env of the contract (CarRacing first), resumable.

`collect` random rollouts -> `train_vae` (V) -> `encode` every frame to its latent's mean
and log-variance -> `train_rnn` (M) -> `train_controller` (C, by CMA-ES, on the real env
or inside M's dream) -> `export` V, C and M's step to `policy.onnx` -> `evaluate` the
policy (on onnxruntime by default, as an actor runs it) on `eval_tracks` episodes of the
real env, beside a random policy. Everything lives in `<logdir>/worldmodels/`;
`stages.json` records the finished stages, so `run_all` continues at the stage it was in
(a stage that was interrupted runs again; `collect` keeps the rollouts it already wrote).
`dream_table` (not a stage) trains C in the dream at several temperatures and reports
virtual and actual scores, as the paper's table does.
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
from daydream.runtime.host_memory import configure_host_memory
from daydream.worldmodels.controller import LinearController, cma_search
from daydream.worldmodels.dream import dream_episode, dream_score
from daydream.worldmodels.mdnrnn import MDNRNN
from daydream.worldmodels.policy import RandomActing, TorchWorldModelsActing
from daydream.worldmodels.vae import ConvVAE, vae_step

log = logging.getLogger(__name__)

STAGES = ("collect", "train-vae", "encode", "train-rnn", "train-controller", "export", "eval")


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
        configure_host_memory(config.host_memory)

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
        np.savez_compressed(buffer, **arrays)  # frames compress ~20x: the full 10,000 rollouts fit a disk
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
         "train-controller": self.train_controller, "export": self.export, "eval": self.evaluate}[stage]()
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

    def action_box(self) -> tuple[np.ndarray, np.ndarray]:
        env = self._env(self.config.seed)
        low, high = env.action_space.low, env.action_space.high
        env.close()
        return low, high

    def _controller(self, params: np.ndarray) -> LinearController:
        low, high = self.action_box()
        return LinearController.from_flat(params, self.wm.z_dim + self.wm.rnn_hidden, low, high)

    def episode(self, acting: Any, seed: int, max_steps: int, patience: int = 0) -> float:
        """One episode's return of an acting policy (`act(obs)`) on the real env.

        With `patience` > 0 the episode ends after that many steps without a positive reward.
        """
        env = self._env(seed)
        total, since_progress = 0.0, 0
        try:
            obs, _ = env.reset(seed=seed)
            for _ in range(max_steps):
                obs, reward, terminated, truncated, _ = env.step(acting.act(obs, mode="eval"))
                total += float(reward)
                since_progress = 0 if reward > 0 else since_progress + 1
                if terminated or truncated or (patience > 0 and since_progress >= patience):
                    break
        finally:
            env.close()
        return total

    def _starts(self) -> list[np.ndarray]:
        """Dreams start from the latents of recorded first frames."""
        return [np.load(f)["mean"][0] for f in sorted(self._require(self.directory / "series", "encode").glob("*.npz"))]

    def search(self, in_dream: bool, temperature: float, label: str = "C (CMA-ES)"
               ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """CMA-ES over C's parameters, scored on the real env or in M's dream at `temperature`.

        Returns the best parameters and the per-generation scores (of the objective CMA-ES maximised:
        the return, or its negative with `objective: minimize`, the learning check's negative control).
        """
        vae, rnn, action_dim = self._models()
        low, high = self.action_box()
        starts = self._starts() if in_dream else []
        generator = torch.Generator().manual_seed(self.config.seed)
        sign = {"maximize": 1.0, "minimize": -1.0}[self.wm.objective]
        history: list[dict[str, float]] = []
        rollouts = self.wm.candidate_rollouts
        calls = iter(range(10**12))

        def score(params: np.ndarray) -> float:
            controller = LinearController.from_flat(params, self.wm.z_dim + self.wm.rnn_hidden, low, high)
            if in_dream:
                return sign * dream_score(controller, rnn, starts, next(calls) * rollouts, rollouts, temperature,
                                          generator, self.wm.rollout_steps)
            # every candidate of a generation drives the same tracks (a fair comparison); new tracks each
            # generation, so C does not overfit a few of them
            first = self.config.seed + 1000 + len(history) * rollouts
            acting = TorchWorldModelsActing(vae, rnn, controller)
            return sign * float(np.mean([self.episode(acting, first + k, self.wm.rollout_steps, self.wm.patience)
                                         for k in range(rollouts)]))

        size = LinearController.size(self.wm.z_dim + self.wm.rnn_hidden, action_dim)
        with self._bar(self.wm.generations, label) as bar:
            def on_generation(generation: int, record: dict[str, float]) -> None:
                history.append(record)
                bar.update()
                bar.set_postfix(mean=f"{record['mean']:.1f}", best=f"{record['best']:.1f}")

            result = cma_search(score, size, self.wm.generations, self.wm.population, self.wm.sigma0,
                                self.config.seed, x0=self._initial_params(size, action_dim),
                                on_generation=on_generation)
        return result.best_params.astype(np.float32), history

    def train_controller(self) -> None:
        params, history = self.search(self.wm.train_in_dream, self.wm.temperature)
        np.save(self.directory / "controller.npy", params)
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

    def export(self) -> Path:
        """V's encoder, C and M's LSTM step as one ONNX graph, `policy.onnx` (what an actor runs)."""
        from daydream.export.worldmodels_onnx import export_worldmodels_onnx

        vae, rnn, _ = self._models()
        params = np.load(self._require(self.directory / "controller.npy", "train-controller"))
        path = self.directory / "policy.onnx"
        atomic_write_bytes(path, export_worldmodels_onnx(vae, rnn, self._controller(params)))
        return path

    def acting(self, runtime: str) -> Any:
        """The trained policy on `runtime`: onnx (the exported graph on onnxruntime) or torch."""
        if runtime == "onnx":
            from daydream.runtime.acting_worldmodels import WorldModelsActing

            return WorldModelsActing(self._require(self.directory / "policy.onnx", "export").read_bytes())
        if runtime == "torch":
            vae, rnn, _ = self._models()
            params = np.load(self._require(self.directory / "controller.npy", "train-controller"))
            return TorchWorldModelsActing(vae, rnn, self._controller(params))
        raise ValueError(f"worldmodels.eval_runtime must be onnx or torch, got {runtime!r}")

    def returns(self, acting: Any, tracks: int, what: str) -> list[float]:
        """Returns on the evaluation tracks 0..tracks-1 (the same tracks for every policy)."""
        out = []
        with self._bar(tracks, what) as bar:
            for k in range(tracks):
                out.append(self.episode(acting, self.config.seed + 100_000 + k, self.wm.eval_steps))
                bar.update()
        return out

    def evaluate(self) -> dict[str, Any]:
        """C's returns over `eval_tracks` tracks of the real env, and a random policy's on `random_tracks` of them."""
        returns = self.returns(self.acting(self.wm.eval_runtime), self.wm.eval_tracks, "eval")
        result: dict[str, Any] = {
            "tracks": len(returns), "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "returns": returns, "runtime": self.wm.eval_runtime, "trained_in_dream": self.wm.train_in_dream,
            "temperature": self.wm.temperature}
        if self.wm.random_tracks > 0:
            low, high = self.action_box()
            random = self.returns(RandomActing(low, high, self.config.seed), self.wm.random_tracks, "random policy")
            result.update(random_tracks=len(random), random_mean_return=float(np.mean(random)),
                          random_std_return=float(np.std(random)), random_returns=random)
        atomic_write_bytes(self.directory / "eval.json", json.dumps(result, indent=1).encode())
        return result

    def dream_table(self) -> list[dict[str, Any]]:
        """For each of `dream_temperatures`: C trained in M's dream at that τ, its virtual score (mean dream
        return at τ over `eval_tracks` dreams) and its actual score (on `eval_tracks` real tracks), the
        paper's table; written to dream_table.json (not a stage of `all`)."""
        vae, rnn, _ = self._models()
        starts, rows = self._starts(), []
        for temperature in self.wm.dream_temperatures:
            params, history = self.search(True, temperature, f"C in the dream, tau {temperature}")
            controller = self._controller(params)
            generator = torch.Generator().manual_seed(self.config.seed + 7)
            virtual = [dream_episode(controller, rnn, starts[k % len(starts)], temperature, generator,
                                     self.wm.eval_steps).total for k in range(self.wm.eval_tracks)]
            actual = self.returns(TorchWorldModelsActing(vae, rnn, controller), self.wm.eval_tracks,
                                  f"actual, tau {temperature}")
            rows.append({"temperature": temperature, "virtual_mean": float(np.mean(virtual)),
                         "virtual_std": float(np.std(virtual)), "actual_mean": float(np.mean(actual)),
                         "actual_std": float(np.std(actual)), "tracks": len(actual), "history": history})
            atomic_write_bytes(self.directory / "dream_table.json", json.dumps(rows, indent=1).encode())
        return rows
