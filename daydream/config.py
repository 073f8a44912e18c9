"""Configuration: YAML files merged into typed, frozen dataclasses.

`configs/defaults.yaml` is the one source of truth for every knob's default; the
dataclasses here only declare names and types. Loading merges, lowest first:
defaults < size preset < task config < `--set key=value` overrides, then checks
every key and type so a typo fails at start-up with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

# The safety layer's settings are one class, owned by the safety layer (usable without a config file).

REPO_ROOT = Path(__file__).resolve().parents[1]
# Size presets renamed when they took the official DreamerV3 shapes (issue 12).
RENAMED_SIZES = {"12m": "size12m", "25m": "size25m", "50m": "size50m"}
# Config keys renamed since (section, old, new): the old name still loads, with a deprecation warning.
# transport.policy held the actor's policy runtime (onnx | torch), now also the PlaNet planner (issue 15).
RENAMED_KEYS = (("transport", "policy", "policy_runtime"),)
# What an actor can run (transport.policy_runtime, `--policy-runtime`): keep in step with TransportConfig.
POLICY_RUNTIMES = ("onnx", "torch", "planner")

log = logging.getLogger(__name__)


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
    threads: int
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
        data = self.to_dict()
        for key, value in changes.items():
            _set_dotted(data, _renamed_key(key.replace("__", ".")), value)
        return _build(Config, data, "")


def save_config_yaml(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what a run was started with, loadable as a task config)."""
    Path(path).write_text(yaml.safe_dump(_plain(config.to_dict()), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_dir() -> Path:
    """Folder holding defaults.yaml and the task configs (DAYDREAM_CONFIG_DIR overrides)."""
    return Path(os.environ.get("DAYDREAM_CONFIG_DIR", REPO_ROOT / "configs"))


def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Accept a path to a YAML file or a bare task name found in the config folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = config_dir() / f"{path.name}.yaml" if path.suffix == "" else config_dir() / path.name
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in config_dir().glob("*.yaml") if p.stem != "defaults")
    raise ConfigError(f"config file '{name_or_path}' not found; known task configs: {', '.join(known)}")


def load_config(
    task: str | os.PathLike[str] | None = None,
    overrides: typing.Sequence[str] = (),
    defaults_path: str | os.PathLike[str] | None = None,
) -> Config:
    """Load defaults, the size preset, a task config and `key=value` overrides into a Config."""
    defaults = _read_yaml(Path(defaults_path) if defaults_path else config_dir() / "defaults.yaml")
    sizes = defaults.pop("sizes", {})
    task_data = _read_yaml(resolve_config_path(task)) if task else {}
    override_data: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_dotted(override_data, key.strip(), yaml.safe_load(raw))

    recipes = defaults.pop("recipes", {})
    recipe = override_data.get("recipe", task_data.get("recipe", defaults.get("recipe")))
    if recipe not in recipes:
        raise ConfigError(f"recipe '{recipe}' is not a preset; choose one of: {', '.join(recipes)}")
    size = override_data.get("size", task_data.get("size", defaults.get("size")))
    if size in RENAMED_SIZES:
        raise ConfigError(
            f"size '{size}' is gone: the presets now have DreamerV3's official shapes; use {RENAMED_SIZES[size]} "
            f"(choose one of: {', '.join(sizes)})")
    if size not in sizes:
        raise ConfigError(f"size '{size}' is not a preset; choose one of: {', '.join(sizes)}")
    merged = defaults
    for layer, origin in ((recipes[recipe], f"recipes.{recipe}"), (sizes[size], f"sizes.{size}"),
                          (task_data, "task config"), (override_data, "--set")):
        merged = _merge(merged, _renamed(layer, origin), origin)
    return _build(Config, merged, "")


def _renamed_key(key: str) -> str:
    """A dotted key under its current name (RENAMED_KEYS), warning when it was a deprecated one."""
    for section, old, new in RENAMED_KEYS:
        if key == f"{section}.{old}":
            log.warning("config key '%s' is deprecated; use '%s.%s'", key, section, new)
            return f"{section}.{new}"
    return key


def _renamed(data: dict[str, Any], origin: str) -> dict[str, Any]:
    """`data` with deprecated key names (RENAMED_KEYS) moved to their new names, warning once per key."""
    for section, old, new in RENAMED_KEYS:
        node = data.get(section)
        if not isinstance(node, dict) or old not in node:
            continue
        if new in node:
            raise ConfigError(f"config keys '{section}.{old}' and '{section}.{new}' both given (from {origin}); "
                              f"'{section}.{old}' is the deprecated name of '{section}.{new}': keep only the new one")
        log.warning("config key '%s.%s' (from %s) is deprecated; use '%s.%s'", section, old, origin, section, new)
        node = {(new if k == old else k): v for k, v in node.items()}
        data = {**data, section: node}
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def _merge(base: dict[str, Any], layer: dict[str, Any], origin: str, prefix: str = "") -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        name = f"{prefix}{key}"
        if key not in base:
            hint = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
            extra = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
            raise ConfigError(f"unknown config key '{name}' (from {origin}){extra}")
        if isinstance(base[key], dict) and not _is_free_mapping(name):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{name}' (from {origin}) is a section and needs a mapping")
            out[key] = _merge(base[key], value, origin, f"{name}.")
        else:
            out[key] = value
    return out


def _is_free_mapping(name: str) -> bool:
    # Sections typed as dict[str, float] take their values as a unit, not key by key.
    return name in ("model.loss_scales", "robot.driver_args", "ros.remap")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'top'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(data) - set(names)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"unknown config key '{prefix}{key}'")
    missing = [n for n in names if n not in data]
    if missing:
        raise ConfigError(f"config key '{prefix}{missing[0]}' has no value (is defaults.yaml complete?)")
    values = {n: _coerce(hints[n], data[n], f"{prefix}{n}") for n in names}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:  # a dataclass's own checks (e.g. SafetyConfig's ranges)
        raise ConfigError(f"config section '{prefix.rstrip('.')}': {exc}") from exc


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:  # free-form values (driver arguments): the consumer checks them
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{name}.")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"config key '{name}' is {value!r}; choose one of: {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[T, ...]: a list of any length
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"config key '{name}' must be a list, got {value!r}")
            return tuple(_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config key '{name}' must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{name}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{name}' must be a mapping, got {value!r}")
        return {_coerce(key_type, k, name): _coerce(value_type, v, f"{name}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(hint):
            try:
                return _coerce(arg, value, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1])
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{name}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{name}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads `3e-4` (no dot) as a string; accept it as the number it means.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{name}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{name}' must be a string, got {value!r}")
        return value
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"config key '{name}' must be null, got {value!r}")
        return None
    raise TypeError(f"unsupported config type {hint!r} for '{name}'")


def config_from_dict(data: dict[str, Any], overrides: typing.Sequence[str] = ()) -> Config:
    """Rebuild a Config saved with `Config.to_dict()` (e.g. in a checkpoint), with overrides."""
    merged = _renamed(dict(data), "a saved config")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        merged = _merge(merged, _renamed(_nested(key.strip(), yaml.safe_load(raw)), "--set"), "--set")
    return _build(Config, merged, "")


def _nested(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _set_dotted(out, key, value)
    return out
