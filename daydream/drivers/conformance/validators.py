"""What a well-formed driver spec and a conforming `read()` sample look like: lists of problems, empty when fine."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from daydream.drivers.interface import SAFE_MODES, DriverSpec, SensorSample

# numpy kinds a sensor may have: bool, signed and unsigned ints, floats
_DTYPE_KINDS = "biuf"


def fmt(values: Iterable[float]) -> str:
    """Numbers for a message: `[0.1, 2, ...]`."""
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def spec_problems(spec: DriverSpec) -> list[str]:
    """Everything wrong with a driver spec (empty: well-formed)."""
    problems: list[str] = []
    if not (isinstance(spec.name, str) and spec.name):
        problems.append("spec.name is empty")
    rate = spec.control_rate_hz
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        problems.append(f"control_rate_hz must be a positive number, got {rate!r}")
    sensors = tuple(spec.sensors)
    if not sensors:
        problems.append("no sensors declared")
    seen: set[str] = set()
    for s in sensors:
        label = f"sensor {s.name!r}"
        if not (isinstance(s.name, str) and s.name):
            problems.append("a sensor has an empty name")
        elif s.name in seen:
            problems.append(f"{label} is declared twice")
        seen.add(s.name)
        if not (isinstance(s.shape, tuple) and s.shape
                and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in s.shape)):
            problems.append(f"{label}: shape {s.shape!r} must be a non-empty tuple of positive ints")
        try:
            dtype = np.dtype(s.dtype)
            if dtype.kind not in _DTYPE_KINDS or dtype.name != s.dtype:
                problems.append(f"{label}: dtype {s.dtype!r} must be a numpy bool/int/float name such as 'float32'")
        except TypeError:
            problems.append(f"{label}: dtype {s.dtype!r} is not a numpy dtype name")
        if not (isinstance(s.unit, str) and s.unit):
            problems.append(f"{label}: no unit (e.g. 'rad', 'rad/s', 'bool')")
        for bound in ("low", "high"):
            value = getattr(s, bound)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                problems.append(f"{label}: {bound} {value!r} must be a finite number or None")
        if isinstance(s.low, (int, float)) and isinstance(s.high, (int, float)) and s.low > s.high:
            problems.append(f"{label}: low {s.low} exceeds high {s.high}")
        if not (isinstance(s.rate_hz, (int, float)) and s.rate_hz >= 0):
            problems.append(f"{label}: rate_hz {s.rate_hz!r} must be >= 0 (0: every read)")
    a = spec.actuator
    names = tuple(a.joint_names)
    n = len(names)
    if not n:
        problems.append("the actuator has no joints")
    if any(not (isinstance(j, str) and j) for j in names):
        problems.append("actuator joint names must be non-empty strings")
    if len(set(names)) != n:
        problems.append(f"actuator joint names repeat: {list(names)}")
    if not (isinstance(a.unit, str) and a.unit):
        problems.append("the actuator has no unit (e.g. 'rad')")
    arrays: dict[str, np.ndarray] = {}
    for field in ("low", "high", "max_rate", "torque_limit"):
        values = tuple(getattr(a, field))
        if len(values) != n:
            problems.append(f"actuator {field} has {len(values)} entries for {n} joints")
            continue
        array = np.asarray(values, np.float64)
        # limits bound every command, so they must be finite; rates and torques may be inf (unbounded / unknown)
        limit = field in ("low", "high")
        if (~np.isfinite(array) if limit else np.isnan(array)).any():
            problems.append(f"actuator {field} {list(values)} must be {'finite' if limit else 'numbers'}")
            continue
        arrays[field] = array
    if "low" in arrays and "high" in arrays and np.any(arrays["low"] > arrays["high"]):
        bad = [names[i] for i in np.flatnonzero(arrays["low"] > arrays["high"])]
        problems.append(f"actuator low exceeds high for joints {bad}")
    for field in ("max_rate", "torque_limit"):
        if field in arrays and np.any(arrays[field] <= 0):
            problems.append(f"actuator {field} must be positive, got {fmt(arrays[field])}")
    try:
        position = spec.sensor("joint_position")
        if isinstance(position.shape, tuple) and int(np.prod(position.shape)) != n:
            problems.append(f"sensor 'joint_position' has shape {position.shape} for {n} joints")
    except KeyError:
        problems.append("no 'joint_position' sensor (the safety layer starts every command from it)")
    modes = tuple(spec.safe_modes)
    if not modes:
        problems.append("no safe modes declared; declare at least one of damping, hold")
    if any(m not in SAFE_MODES for m in modes):
        problems.append(f"safe_modes {list(modes)} must be from {list(SAFE_MODES)}")
    if len(set(modes)) != len(modes):
        problems.append(f"safe_modes {list(modes)} repeat")
    return problems


def sample_problems(spec: DriverSpec, sample: Any) -> list[str]:
    """Everything wrong with one `read()` result against the spec (empty: it conforms)."""
    if not isinstance(sample, SensorSample):
        return [f"read() returned a {type(sample).__name__}, not a SensorSample"]
    problems: list[str] = []
    stamp = sample.stamp
    if not (isinstance(stamp, (int, float, np.floating)) and math.isfinite(float(stamp))):
        problems.append(f"stamp {stamp!r} is not a finite number of seconds")
    values = sample.values
    declared = [s.name for s in spec.sensors]
    missing = [name for name in declared if name not in values]
    if missing:
        problems.append(f"declared sensors {missing} are missing")
    extra = sorted(set(values) - set(declared))
    if extra:
        problems.append(f"undeclared sensors {extra} in the sample (declare them in spec.sensors)")
    for s in spec.sensors:
        value = values.get(s.name)
        if value is None:
            continue
        label = f"sensor '{s.name}'"
        if not isinstance(value, np.ndarray):
            problems.append(f"{label} is a {type(value).__name__}, not a numpy array")
            continue
        if value.shape != tuple(s.shape):
            problems.append(f"{label} has shape {value.shape}, declared {tuple(s.shape)}")
            continue
        try:
            if value.dtype != np.dtype(s.dtype):
                problems.append(f"{label} has dtype {value.dtype}, declared {s.dtype}")
        except TypeError:
            pass  # an invalid declared dtype is the spec check's to report
        if value.dtype.kind not in _DTYPE_KINDS:
            problems.append(f"{label} has non-numeric dtype {value.dtype}")
            continue
        numbers = value.astype(np.float64)
        bad = ~np.isfinite(numbers)
        if bad.any():
            problems.append(f"{label} is not finite at {int(bad.sum())} of {numbers.size} entries")
            continue
        if s.low is not None and numbers.size and numbers.min() < s.low:
            problems.append(f"{label} reads {numbers.min():.6g}, below its declared low {s.low:g}")
        if s.high is not None and numbers.size and numbers.max() > s.high:
            problems.append(f"{label} reads {numbers.max():.6g}, above its declared high {s.high:g}")
    return problems
