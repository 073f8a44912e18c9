"""Loading configs: YAML files merged (defaults < size preset < task config < `--set` overrides) and
checked key by key and type by type into the schema's dataclasses, so a typo fails at start-up."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from daydream.config.schema import REPO_ROOT, Config, ConfigError

# Size presets renamed when they took the official DreamerV3 shapes (issue 12).
RENAMED_SIZES = {"12m": "size12m", "25m": "size25m", "50m": "size50m"}
# Config keys renamed since (section, old, new): the old name still loads, with a deprecation warning.
# transport.policy held the actor's policy runtime (onnx | torch), now also the PlaNet planner (issue 15).
RENAMED_KEYS = (("transport", "policy", "policy_runtime"),)

log = logging.getLogger(__name__)


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
    defaults, sizes, recipes = _read_defaults(Path(defaults_path) if defaults_path else None)
    task_data = _read_yaml(resolve_config_path(task)) if task else {}
    override_data = _parse_overrides(overrides)

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
    """Rebuild a Config saved with `Config.to_dict()` (e.g. in a checkpoint), with overrides.

    A knob added since the config was saved takes its default from defaults.yaml (the
    behaviour the run had before the knob existed), so older checkpoints stay loadable.
    """
    defaults, _, _ = _read_defaults()
    saved = _renamed(dict(data), "a saved config")
    added = _missing_keys(defaults, saved)
    if added:
        log.info("the saved config predates %s: their defaults apply", ", ".join(added))
    merged = _merge(defaults, saved, "a saved config")
    for item in overrides:  # one at a time, as before: an old and a new key name may both be given here
        merged = _merge(merged, _renamed(_parse_overrides([item]), "--set"), "--set")
    return _build(Config, merged, "")


def _missing_keys(base: dict[str, Any], data: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of `base` that `data` lacks (sections that are free mappings count as one key)."""
    out = []
    for key, value in base.items():
        name = f"{prefix}{key}"
        if key not in data:
            out.append(name)
        elif isinstance(value, dict) and isinstance(data[key], dict) and not _is_free_mapping(name):
            out += _missing_keys(value, data[key], f"{name}.")
    return out


def _read_defaults(path: Path | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """defaults.yaml (or `path`) as (the knobs' defaults, the size presets, the recipes)."""
    defaults = _read_yaml(path or config_dir() / "defaults.yaml")
    return defaults, defaults.pop("sizes", {}), defaults.pop("recipes", {})


def _parse_overrides(overrides: typing.Sequence[str]) -> dict[str, Any]:
    """`key.sub=value` items (values parsed as YAML) as one nested mapping; later items win."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_dotted(out, key.strip(), yaml.safe_load(raw))
    return out
