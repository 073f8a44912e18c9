"""The Dreamer agent: acting (`policy`), learning (`train`) and its checkpointable state."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from daydream.agent.behavior import Behavior
from daydream.agent.nets import ObsKeys, init_weights
from daydream.agent.optim import ClippedAdam
from daydream.agent.update_graph import Capture, UpdateGraph
from daydream.agent.world_model import WorldModel
from daydream.config import Config, ConfigError

log = logging.getLogger(__name__)

PolicyState = dict[str, Tensor]
LOSS_SCALE_KEYS = {"recon", "reward", "cont", "dyn", "rep"}


class CheckpointMismatch(ValueError):
    """A checkpoint was made for a different model shape, observation or action spec."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for but CUDA is not available here; use device: cpu or auto")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    # auto = float32: on an H200 the eager (launch-bound) update ran 1.6-1.7x slower under bf16
    # autocast than in float32 (benchmarks/RESULTS.md); bf16 pays once the update is compiled or graphed
    if name == "auto":
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def action_spec(space: gym.Space) -> tuple[int, bool]:
    """(action dimension, discrete?) of an env's action space under the env contract."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n), True
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0]), False
    raise ValueError(f"action space {space} is not supported; use Box(-1, 1, (n,)) or Discrete(n)")


class Agent:
    """DreamerV3 agent.

    `policy(obs, state)` maps a batch of observations (numpy, leading batch dim) and the
    previous policy state to actions and the next state. `train(batch)` does one update
    of world model, actor and critic on a replay batch of [B, T] arrays and returns
    metrics as device tensors (convert with `.item()` only when logging, so the update
    loop does not wait on the device).
    """

    def __init__(self, config: Config, obs_space: gym.spaces.Dict, act_space: gym.Space,
                 capture: Capture | None = None) -> None:
        """`capture` makes the update graph under `cuda_graph: true` (default: a CUDA graph; tests
        on a CPU pass an eager stand-in, see `daydream.agent.update_graph`)."""
        self.config = config
        mc = config.model
        if set(mc.loss_scales) != LOSS_SCALE_KEYS:
            raise ConfigError(f"model.loss_scales needs exactly the keys {sorted(LOSS_SCALE_KEYS)}, got "
                              f"{sorted(mc.loss_scales)}")
        self.device = resolve_device(config.device)
        self.dtype = resolve_precision(config.precision, self.device)
        self.obs_shapes = {k: tuple(v.shape) for k, v in obs_space.spaces.items()}
        self.keys = ObsKeys.select(self.obs_shapes, mc.cnn_keys, mc.mlp_keys)
        self.action_dim, self.discrete = action_spec(act_space)

        wm = WorldModel(mc, self.keys, self.action_dim)
        behavior = Behavior(config.behavior, mc, wm.rssm.feat_dim, self.action_dim, self.discrete)
        # every layer at once, after construction: layers marked with an output scale keep it
        # (zero reward and critic outputs, the actor's output scale)
        for module in (wm, behavior.actor, behavior.critic):
            init_weights(module, mc.init_fan)
        behavior.slow_critic.load_state_dict(behavior.critic.state_dict())
        self.nets = nn.ModuleDict({"wm": wm, "behavior": behavior}).to(self.device)
        self.wm, self.behavior = wm, behavior

        # cuda_graph is the learner's: the same config's actors, evaluations and reports act on any
        # device, so a non-CUDA device is refused only when this agent is asked to train
        graphed = config.cuda_graph and (capture is not None or self.device.type == "cuda")
        bc = config.behavior
        self.model_opt = ClippedAdam(wm.parameters(), mc.lr, mc.eps, mc.clip, mc.clip_mode, mc.agc, mc.opt, mc.warmup,
                                     capturable=graphed)
        self.actor_opt = ClippedAdam(behavior.actor.parameters(), bc.actor_lr, bc.eps, bc.actor_clip, bc.clip_mode,
                                     bc.agc, bc.opt, bc.warmup, capturable=graphed)
        self.critic_opt = ClippedAdam(behavior.critic.parameters(), bc.critic_lr, bc.eps, bc.critic_clip, bc.clip_mode,
                                      bc.agc, bc.opt, bc.warmup, capturable=graphed)
        self.updates = 0
        self._compile_announced = False  # compile: the first update in this process says it compiles
        # behavior.kind: planet acts by planning over the world model (PlaNet); the actor and critic stay untrained
        self.planner = None
        if config.behavior.kind == "planet":
            if self.discrete:
                raise ConfigError("behavior.kind: planet plans continuous actions (CEM over the action box); this "
                                  "env's actions are discrete: use behavior.kind: dreamer or a continuous action space")
            from daydream.agent.planet import LatentPlanner

            self.planner = LatentPlanner(wm, config.behavior.planner, self.action_dim)
        # compile: the step functions the filter and imagination loops call at every step (compiling
        # the losses whole unrolled the loops and took minutes); the rest stays eager
        if config.compile:
            _check_compile_toolchain(self.device)
            wm.rssm.compile_steps()
            behavior.compile_step()
        self._wm_loss, self._actor_loss, self._critic_loss = wm.loss, behavior.actor_loss, behavior.critic_loss
        # cuda_graph: the whole update (losses, backward passes, optimiser steps) replays from one graph
        self.update_graph = UpdateGraph(self._update, capture=capture) if graphed else None

    # -- acting ----------------------------------------------------------------------

    def initial_state(self, batch: int) -> PolicyState:
        state = self.wm.rssm.initial(batch, self.device)
        state["action"] = torch.zeros(batch, self.action_dim, device=self.device)
        return state

    @torch.no_grad()
    def policy(
        self, obs: dict[str, np.ndarray], state: PolicyState | None = None,
        mode: Literal["explore", "eval"] = "explore",
        noise: dict[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, PolicyState]:
        """Filter the observation into the latent state and pick an action.

        `obs` holds the model's observation keys and `is_first`, each with a leading batch
        dimension. Returns the action batch (one-hot for discrete actions) and the state
        to pass to the next call; `state=None` starts fresh. `noise` optionally fixes the
        randomness: `latent` (the RSSM sample's noise) and `action` (Gaussian noise for
        continuous actions, Gumbel noise for discrete ones), as the ONNX graph takes them.
        """
        data = self._to_tensors(obs, batch_dims=1)
        batch = data["is_first"].shape[0]
        if state is None:
            state = self.initial_state(batch)
        latent = {k: v for k, v in state.items() if k != "action"}
        with self._autocast():
            embed = self.wm.encoder(data)
            fixed = {k: torch.as_tensor(v, device=self.device) for k, v in (noise or {}).items()}
            post = self.wm.rssm.obs_step(latent, state["action"], embed, data["is_first"], noise=fixed.get("latent"))
            if self.planner is not None:  # PlaNet: `noise` may also fix the planner's draws (planet.py)
                action = self.planner.act(post, mode, fixed)
            else:
                params = self.behavior.actor.dist_params(self.wm.rssm.feat(post))
                if mode == "explore":
                    action = self.behavior.actor.sample(params, fixed.get("action"))
                else:
                    action = self.behavior.actor.mode(params)
        action = action.float()
        if self.discrete:  # exact one-hot: the straight-through sample carries rounding error
            action = torch.nn.functional.one_hot(action.argmax(-1), self.action_dim).float()
        return action.cpu().numpy(), {**post, "action": action}

    # -- learning --------------------------------------------------------------------

    def train(self, batch: dict[str, np.ndarray]) -> dict[str, Tensor]:
        """One update of world model, critic and actor on a [B, T] replay batch."""
        if self.config.cuda_graph and self.update_graph is None:
            raise ConfigError(f"cuda_graph: true captures the update in a CUDA graph, but this learner runs on "
                              f"'{self.device}'; set cuda_graph: false, or device: cuda on a machine with a GPU")
        data = self._to_tensors(batch, batch_dims=2)
        self.nets.train()
        if self.config.compile and not self._compile_announced:
            log.info("compile: true: this first update compiles the loop steps with torch.compile (~30 s for the "
                     "tiny model on a CPU; a few seconds once torch's cache holds them)")
            self._compile_announced = True
        if self.update_graph is None:
            metrics = self._update(data)
        else:
            for opt in (self.model_opt, self.actor_opt, self.critic_opt):
                opt.schedule()  # the warm-up's Python side, which a graph's replay does not run
            metrics = self.update_graph(data)
        self.updates += 1
        return metrics

    def _update(self, data: dict[str, Tensor]) -> dict[str, Tensor]:
        """The update's tensor work on a batch of device tensors (what `cuda_graph` captures):
        no host syncs, no Python state that a replay would skip."""
        with self._autocast():
            model_loss, post, metrics = self._wm_loss(data)
        metrics["model_grad_norm"] = self.model_opt.step(model_loss)
        if self.planner is not None:  # PlaNet: only the world model learns; behaviour is planning
            return metrics
        with self._autocast():
            actor_loss, targets, behavior_metrics = self._actor_loss(self.wm, post, data["is_terminal"])
        # the graph stays: the critic's loss backpropagates through the actor's critic pass (Behavior.actor_loss)
        metrics["actor_grad_norm"] = self.actor_opt.step(actor_loss, retain_graph=True)
        replay = None
        if self.config.behavior.repval_scale:
            replay = {"feat": self.wm.rssm.feat(post).detach(), "reward": data["reward"],
                      "is_terminal": data["is_terminal"], "is_last": data["is_last"]}
        with self._autocast():  # the critic's parameters and inputs are untouched by the actor's step
            critic_loss, critic_metrics = self._critic_loss(targets, replay)
        metrics["critic_grad_norm"] = self.critic_opt.step(critic_loss)
        behavior_metrics.update(critic_metrics)
        self.behavior.update_slow_critic()
        metrics.update(behavior_metrics)
        return metrics

    # -- state -----------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded into this agent."""
        return {
            "model": dataclasses.asdict(self.config.model),
            "behavior_layers": [self.config.behavior.actor_layers, self.config.behavior.critic_layers],
            "obs": {k: list(v) for k, v in {**self.keys.cnn, **self.keys.mlp}.items()},
            "action": [self.action_dim, self.discrete],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec(),
            "nets": self.nets.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_compatible(state)
        self.nets.load_state_dict(state["nets"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = int(state["updates"])
        if self.update_graph is not None:  # the graph holds the replaced optimiser state's addresses
            self.update_graph.reset()

    def _check_compatible(self, state: dict[str, Any]) -> None:
        mine, theirs = self.spec(), state.get("spec", {})
        problems = []
        for section in ("obs", "action", "behavior_layers"):
            if theirs.get(section) != mine[section]:
                problems.append(f"{section}: checkpoint {theirs.get(section)} vs config {mine[section]}")
        own = self.nets.state_dict()
        for name, tensor in state.get("nets", {}).items():
            if name in own and tuple(own[name].shape) != tuple(tensor.shape):
                problems.append(f"parameter {name}: checkpoint {tuple(tensor.shape)} vs config "
                                f"{tuple(own[name].shape)}")
                break
        missing = set(own) - set(state.get("nets", {}))
        if missing:
            problems.append(f"{len(missing)} parameters missing from the checkpoint, e.g. {sorted(missing)[0]}")
        if problems:
            old = theirs.get("model", {})
            diff = [f"model.{k}: {old.get(k)!r} -> {v!r}" for k, v in mine["model"].items() if old.get(k) != v]
            raise CheckpointMismatch(
                "checkpoint does not fit this model: " + "; ".join(problems)
                + (". Config differences: " + ", ".join(diff) if diff else "")
                + ". Load it with the config it was trained with."
            )

    # -- helpers ---------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        # a graph must not capture autocast's weight-cast cache (torch's CUDA graph notes)
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=self.update_graph is None)

    def _to_tensors(self, arrays: dict[str, np.ndarray], batch_dims: int) -> dict[str, Tensor]:
        needed = [*self.keys.cnn, *self.keys.mlp, "is_first"]
        if batch_dims == 2:
            needed += ["action", "reward", "is_terminal"]
            if self.config.behavior.repval_scale:
                needed.append("is_last")
        out = {}
        for key in needed:
            if key not in arrays:
                raise KeyError(f"observation batch lacks key '{key}'; it has {sorted(arrays)}")
            value = arrays[key]  # numpy, or a tensor already on the device (replay.prefetch.to_device)
            value = value if isinstance(value, Tensor) else np.asarray(value)
            expected = self._expected_shape(key)
            if expected is not None and tuple(value.shape[batch_dims:]) != expected:
                raise ValueError(
                    f"observation '{key}' has shape {tuple(value.shape[batch_dims:])} per step, the model expects "
                    f"{expected} (with {batch_dims} leading batch dims)"
                )
            tensor = torch.as_tensor(value)
            if self.device.type == "cuda" and tensor.device.type == "cpu":
                tensor = tensor.pin_memory().to(self.device, non_blocking=True)
            if tensor.dtype == torch.float64:
                tensor = tensor.float()
            out[key] = tensor
        out["is_first"] = out["is_first"].bool()
        if batch_dims == 2:
            # A training sequence starts from the initial state wherever it was cut from an
            # episode, so its first step is a start: the previous action is zeroed with it
            # (a new tensor: the caller's arrays are shared with as_tensor and stay as given).
            out["is_first"] = torch.cat([torch.ones_like(out["is_first"][:, :1]), out["is_first"][:, 1:]], 1)
        for flag in ("is_terminal", "is_last"):
            if flag in out:
                out[flag] = out[flag].bool()
        if "action" in out:
            out["action"] = out["action"].float()
        return out

    def _expected_shape(self, key: str) -> tuple[int, ...] | None:
        if key in self.keys.cnn:
            return self.keys.cnn[key]
        if key in self.keys.mlp:
            return self.keys.mlp[key]
        if key == "action":
            return (self.action_dim,)
        return ()


def _check_compile_toolchain(device: torch.device) -> None:
    """compile: true on a CPU builds C++ kernels at the first update: without a compiler, say so at startup
    (a learner process would otherwise start, load its replay and die in its first update)."""
    if device.type != "cpu":
        return
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception as exc:  # torch's InvalidCxxCompiler; its module path has moved between releases
        raise ConfigError(f"compile: true on a CPU needs a C++ compiler for torch.compile's kernels, and torch "
                          f"found none ({exc}); install one (for example `apt-get install g++`) or set "
                          f"compile: false") from exc
