"""PlaNet's planner on the robot: the cross-entropy method in numpy over the exported planning graphs.

Needs only numpy and onnxruntime (no torch), like `OnnxPolicy`, and has its interface:
`policy(obs, state)` filters the observation into the latent state (filter.onnx) and
plans from there, `plan(deter, stoch)` is one CEM search. It is the torch planner's
maths (`daydream.agent.planet`, `daydream.agent.planner.cem`) step for step, so that
given the same noise both give the same plan (tests/test_planet_onnx.py): a diagonal
Gaussian over `horizon` actions from N(0, I), `iterations` refits to the `top_k` best of
`candidates` clipped sequences, each scored by the reward summed along its imagined
rollout (imagine_step.onnx, once per step of the horizon over all candidates), the
latent noise drawn once per planning step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from daydream.export.planner_bundle import PlannerSpec, unpack_bundle
from daydream.export.spec import obs_feeds

if TYPE_CHECKING:
    from daydream.config import PlannerConfig

log = logging.getLogger(__name__)

PlannerState = dict[str, np.ndarray]


def _session(model: bytes, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxPlanner:
    def __init__(self, bundle: str | Path | bytes, cfg: "PlannerConfig", threads: int = 1,
                 seed: int | None = None) -> None:
        data = bundle if isinstance(bundle, bytes) else Path(bundle).read_bytes()
        self.spec: PlannerSpec
        self.spec, filter_onnx, step_onnx = unpack_bundle(data)
        if not 0 < cfg.top_k <= cfg.candidates or cfg.horizon <= 0 or cfg.iterations <= 0:
            raise ValueError(f"behavior.planner needs 0 < top_k <= candidates and a positive horizon and number of "
                             f"iterations, got {cfg}")
        self.cfg = cfg
        self.sign = 1.0 if cfg.objective == "maximize" else -1.0
        try:
            self.filter_session, self.step_session = _session(filter_onnx, threads), _session(step_onnx, threads)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"could not load the planner's ONNX graphs: {exc}") from exc
        self.rng = np.random.default_rng(seed)

    @property
    def version(self) -> int:
        return self.spec.version

    def initial_state(self, batch: int) -> PlannerState:
        # the filter graph resets the state itself where is_first is set, so zeros suffice here
        return {"deter": np.zeros((batch, self.spec.deter), np.float32),
                "stoch": np.zeros((batch, *self.spec.stoch), np.float32),
                "action": np.zeros((batch, self.spec.action_dim), np.float32)}

    def _draw(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.spec.latent_noise == "gumbel":
            u = self.rng.uniform(1e-10, 1.0 - 1e-7, shape)
            return (-np.log(-np.log(u))).astype(np.float32)
        return self.rng.standard_normal(shape, dtype=np.float32)

    # -- planning --------------------------------------------------------------------

    def returns(self, deter: np.ndarray, stoch: np.ndarray, actions: np.ndarray,
                latent_noise: np.ndarray) -> np.ndarray:
        """Predicted return [N] of each action sequence [N, H, A] from one start state (deter [1, D],
        stoch [1, ...])."""
        n, horizon = actions.shape[:2]
        deter = np.repeat(np.asarray(deter, np.float32), n, 0)
        stoch = np.repeat(np.asarray(stoch, np.float32), n, 0)
        # time-major and contiguous: each step feeds one [N, ...] slice without a copy
        steps = np.ascontiguousarray(actions.transpose(1, 0, 2), np.float32)
        noise = np.ascontiguousarray(np.moveaxis(latent_noise, 1, 0), np.float32)
        total = np.zeros(n, np.float32)
        for t in range(horizon):
            deter, stoch, reward = self.step_session.run(
                None, {"deter": deter, "stoch": stoch, "action": steps[t], "latent_noise": noise[t]})
            total += reward
        return total

    def plan(self, deter: np.ndarray, stoch: np.ndarray, noise: dict[str, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, float]:
        """One CEM search from a start state (batch 1); returns (mean [H, A], std [H, A], best predicted return).

        `noise` may fix `plan_action` [iterations, candidates, horizon, action] and
        `plan_latent` [candidates, horizon, *stoch], as the torch planner takes them.
        """
        cfg, noise = self.cfg, noise or {}
        n, h, a = cfg.candidates, cfg.horizon, self.spec.action_dim
        latent = noise.get("plan_latent")
        latent = self._draw((n, h, *self.spec.stoch)) if latent is None else np.asarray(latent, np.float32)
        fixed = noise.get("plan_action")
        mean, std = np.zeros((h, a), np.float32), np.ones((h, a), np.float32)
        best = float("-inf")
        for i in range(cfg.iterations):
            eps = (self.rng.standard_normal((n, h, a), dtype=np.float32) if fixed is None
                   else np.asarray(fixed[i], np.float32))
            actions = np.clip(mean + std * eps, -1.0, 1.0)
            score = self.sign * self.returns(deter, stoch, actions, latent)
            elite = actions[np.argpartition(-score, cfg.top_k - 1)[: cfg.top_k]]  # the top_k, in any order
            mean, std = elite.mean(0), elite.std(0)
            best = float(score.max())
        return mean, std, self.sign * best

    # -- acting ----------------------------------------------------------------------

    def filter(self, obs: dict[str, np.ndarray], state: PlannerState, latent_noise: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The posterior state (deter, stoch) after a batch of observations (with `is_first`)."""
        is_first = np.asarray(obs["is_first"], dtype=bool).reshape(-1)
        feeds = obs_feeds(self.spec.obs, obs, "planner")
        if latent_noise is None:
            latent_noise = self._draw((len(is_first), *self.spec.stoch))
        feeds.update(deter=np.asarray(state["deter"], np.float32), stoch=np.asarray(state["stoch"], np.float32),
                     prev_action=np.asarray(state["action"], np.float32), is_first=is_first,
                     latent_noise=np.asarray(latent_noise, np.float32))
        deter, stoch = self.filter_session.run(None, feeds)
        return deter, stoch

    def policy(self, obs: dict[str, np.ndarray], state: PlannerState | None = None,
               mode: Literal["explore", "eval"] = "explore", noise: dict[str, np.ndarray] | None = None
               ) -> tuple[np.ndarray, PlannerState]:
        """Filter, plan for each batch element, execute the first action (plus exploration noise in explore mode).

        `noise` keys as the torch agent's: `latent` (the posterior sample), `plan_action`,
        `plan_latent` and `action` (standard normal, scaled by explore_noise).
        """
        noise = noise or {}
        batch = np.asarray(obs["is_first"]).reshape(-1).shape[0]
        state = state or self.initial_state(batch)
        deter, stoch = self.filter(obs, state, noise.get("latent"))
        first = np.stack([self.plan(deter[b:b + 1], stoch[b:b + 1], noise)[0][0] for b in range(batch)])
        if mode == "explore" and self.cfg.explore_noise > 0:
            eps = noise.get("action")
            eps = (self.rng.standard_normal(first.shape, dtype=np.float32) if eps is None
                   else np.asarray(eps, np.float32))
            first = first + self.cfg.explore_noise * eps
        action = np.clip(first, -1.0, 1.0).astype(np.float32)
        return action, {"deter": deter, "stoch": stoch, "action": action}
