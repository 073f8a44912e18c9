"""The config schema: one frozen dataclass per section of `configs/defaults.yaml`, with the names and
types of its knobs (their defaults live in the YAML), and `ConfigError`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[2]
# What an actor can run (transport.policy_runtime, `--policy-runtime`): keep in step with TransportConfig.
POLICY_RUNTIMES = ("onnx", "torch", "planner")


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    backend: Literal["dmc", "gym", "carracing", "robot"]
    task: str
    obs: Literal["proprio", "pixels", "both"]
    size: tuple[int, int]
    action_repeat: int
    time_limit: int
    discrete: bool
    camera: int
    render: bool


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    capacity: int
    chunk_size: int
    batch_size: int
    batch_length: int
    prefetch: int
    directory: str
    max_open_files: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    latent: Literal["categorical", "gaussian"]
    deter: int
    hidden: int
    stoch: int
    classes: int
    unimix: float
    blocks: int
    dyn_input: Literal["joint", "split"]
    dyn_layers: int
    gate_norm: bool
    prior_layers: int
    initial: Literal["learned", "zeros"]
    min_std: float
    norm: Literal["rms", "layer", "none"]
    act: Literal["silu", "elu", "relu", "tanh"]
    units: int
    mlp_layers: int
    head_layers: int
    cnn_depth: int
    cnn_min_res: int
    mlp_keys: str
    cnn_keys: str
    bins: int
    bin_range: float
    twohot_space: Literal["symlog", "raw"]
    free_nats: float
    loss_scales: dict[str, float]
    lr: float
    eps: float
    init_fan: Literal["avg", "in"]
    opt: Literal["adam", "laprop"]
    warmup: int
    clip: float
    clip_mode: Literal["norm", "agc"]
    agc: float


@dataclasses.dataclass(frozen=True)
class BehaviorConfig:
    horizon: int
    discount: float
    lambda_: float
    opt: Literal["adam", "laprop"]
    actor_lr: float
    critic_lr: float
    eps: float
    warmup: int
    actor_clip: float
    critic_clip: float
    clip_mode: Literal["norm", "agc"]
    agc: float
    actor_layers: int
    critic_layers: int
    entropy: float
    actor_grad: Literal["auto", "dynamics", "reinforce"]
    action_min_std: float
    action_max_std: float
    actor_outscale: float
    slow_critic_fraction: float
    slow_critic_reg: float
    repval_scale: float
    retnorm_decay: float
    retnorm_low: float
    retnorm_high: float
    retnorm_floor: float
    kind: Literal["dreamer", "planet"]
    planner: "PlannerConfig"


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
    """PlaNet's model-predictive control (behavior.kind: planet): CEM over action sequences in the RSSM."""
    horizon: int
    candidates: int
    top_k: int
    iterations: int
    explore_noise: float
    objective: Literal["maximize", "minimize"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int
    train_ratio: float
    prefill: int
    log_every: int
    eval_every: int
    eval_episodes: int
    eval_mode: Literal["eval", "explore"]
    checkpoint_every: int
    video_every: int
    progress: bool


# The safe modes a driver may offer (drivers.interface re-exports them); robot.safety.safe_mode names one.
SafeMode = Literal["damping", "hold"]
SAFE_MODES: tuple[SafeMode, ...] = typing.get_args(SafeMode)


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
    """Settings of the safety layer (config section `robot.safety`)."""

    max_delta: float = 0.2               # largest change of a joint target per command (rad)
    lowpass_alpha: float = 1.0           # target filter y = a*x + (1-a)*y_prev, in (0, 1]; 1 = off
    watchdog_timeout_s: float = 0.5      # no command for this long (driver clock) -> safe mode
    safe_mode: SafeMode = "damping"  # what the watchdog and e-stop switch to
    watchdog_auto_resume: bool = True    # leave the watchdog's safe mode when commands come back

    def __post_init__(self) -> None:
        for name in ("max_delta", "watchdog_timeout_s"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"safety.{name} must be a positive finite number, got {value!r}")
        alpha = self.lowpass_alpha
        if not _is_number(alpha) or not 0.0 < alpha <= 1.0:
            raise ValueError(f"safety.lowpass_alpha must be in (0, 1] (1 = filter off), got {alpha!r}")
        if self.safe_mode not in SAFE_MODES:
            raise ValueError(f"safety.safe_mode must be one of {list(SAFE_MODES)}, got {self.safe_mode!r}")
        # A YAML "false" string or a 0 would otherwise pass as a truth value.
        if not isinstance(self.watchdog_auto_resume, bool):
            raise ValueError(f"safety.watchdog_auto_resume must be true or false, got {self.watchdog_auto_resume!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SafetyConfig":
        """Build from a config section; unknown keys are errors (they are usually typos)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown safety setting(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(values))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class RobotConfig:
    driver: str
    driver_args: dict[str, Any]
    control_hz: float
    pacing: Literal["auto", "wall", "sim"]
    action_scale: float
    stale_timeout_s: float
    reset_on_fall: bool
    reset_each_episode: bool
    camera: bool
    safety: SafetyConfig


@dataclasses.dataclass(frozen=True)
class RosConfig:
    backend: Literal["auto", "rclpy", "dds"]
    domain_id: int | None  # None: $ROS_DOMAIN_ID (else 0), for both backends
    namespace: str
    publish_hz: float
    sync_tolerance_s: float
    command_type: Literal["array", "trajectory"]
    sensor_timeout_s: float
    status_every_s: float
    remap: dict[str, str]  # topic remappings of both backends: a node's name -> the name on the graph


@dataclasses.dataclass(frozen=True)
class CurveConfig:
    enabled: bool
    keys_dir: str


@dataclasses.dataclass(frozen=True)
class TransportConfig:
    bind: str
    learner: str
    actor_id: str
    policy_runtime: Literal["onnx", "torch", "planner"]
    policy_threads: int
    chunk_length: int
    publish_every: int
    pace_actors: bool
    pace_slack_steps: int
    status_every_s: float
    max_message_bytes: int
    max_in_flight: int
    resend_timeout_s: float
    heartbeat_interval_s: float
    learner_timeout_s: float
    policy_request_interval_s: float
    drain_timeout_s: float
    spool_max_mb: float
    on_learner_done: Literal["stop", "keep_acting"]
    done_linger_s: float
    insecure: bool
    curve: CurveConfig


@dataclasses.dataclass(frozen=True)
class WorldModelsConfig:
    rollouts: int
    rollout_steps: int
    eval_steps: int
    z_dim: int
    kl_tolerance: float
    vae_epochs: int
    vae_batch: int
    vae_lr: float
    rnn_hidden: int
    mixtures: int
    rnn_epochs: int
    rnn_batch: int
    rnn_seq_len: int
    rnn_lr: float
    population: int
    candidate_rollouts: int
    generations: int
    sigma0: float
    train_in_dream: bool
    temperature: float
    eval_tracks: int
    initial_bias: tuple[float, ...]
    patience: int
    objective: Literal["maximize", "minimize"]
    eval_runtime: Literal["onnx", "torch"]
    random_tracks: int
    dream_temperatures: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int
    logdir: str
    device: str
    precision: Literal["auto", "float32", "bfloat16", "float16"]
    compile: bool
    cuda_graph: bool
    threads: int
    host_memory: Literal["retain", "system"]
    size: str
    recipe: str
    agent: Literal["dreamer", "worldmodels"]
    env: EnvConfig
    replay: ReplayConfig
    model: ModelConfig
    behavior: BehaviorConfig
    train: TrainConfig
    transport: TransportConfig
    robot: RobotConfig
    ros: RosConfig
    worldmodels: WorldModelsConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self, *sections: str) -> str:
        """A short hash of the named sections (all if none): identifies a model's shape."""
        data = self.to_dict()
        if sections:
            data = {k: data[k] for k in sections}
        blob = json.dumps(data, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> "Config":
        """A copy with top-level fields or dotted keys changed, re-validated."""
        from daydream.config.loader import _build, _renamed_key, _set_dotted

        data = self.to_dict()
        for key, value in changes.items():
            _set_dotted(data, _renamed_key(key.replace("__", ".")), value)
        return _build(Config, data, "")


