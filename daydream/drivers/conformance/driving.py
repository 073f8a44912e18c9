"""How the checks drive and observe a driver: waiting in driver time, holding, writing and probing targets."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from daydream.drivers.conformance.runner import CheckFailed
from daydream.drivers.conformance.validators import fmt as _fmt, sample_problems
from daydream.drivers.interface import MODES, Command, Driver, DriverSpec, Health, SensorSample, SimulatedDriver


def is_simulated(driver: Driver) -> bool:
    return isinstance(driver, SimulatedDriver)


def period_of(spec: DriverSpec) -> float:
    return 1.0 / spec.control_rate_hz


def advance(driver: Driver, seconds: float) -> None:
    """Let `seconds` of driver time pass: simulated by advance(), else slept."""
    if seconds <= 0:
        return
    if isinstance(driver, SimulatedDriver):
        driver.advance(seconds)
    else:
        time.sleep(seconds)


def limits_of(spec: DriverSpec) -> tuple[np.ndarray, np.ndarray]:
    return spec.actuator.low_array(), spec.actuator.high_array()


def measured(driver: Driver) -> np.ndarray:
    n = driver.spec.actuator.size
    value = driver.read().values.get("joint_position")
    if value is None:
        raise CheckFailed("cannot run: read() has no 'joint_position' (this check and the safety layer need it)")
    position = np.asarray(value, np.float64).reshape(-1)
    if position.shape != (n,):
        raise CheckFailed(f"cannot run: read()'s 'joint_position' has {position.size} values for {n} joints "
                          "(see the read check)")
    if not np.all(np.isfinite(position)):
        raise CheckFailed(f"cannot run: read()'s 'joint_position' is not finite: {_fmt(position)}")
    return position


def hold_target(driver: Driver) -> np.ndarray:
    """A command that keeps the robot where it is: the measured pose, inside the limits."""
    low, high = limits_of(driver.spec)
    return np.clip(measured(driver), low, high)


def write_target(driver: Driver, target: np.ndarray) -> None:
    driver.write(Command(np.array(target, np.float64), stamp=driver.now()))


def drive(driver: Driver, target: np.ndarray, seconds: float) -> int:
    """Write `target` every control period for `seconds` (reading each period, as an env does); the write count."""
    period = period_of(driver.spec)
    steps = max(1, math.ceil(seconds / period - 1e-9))
    for _ in range(steps):
        write_target(driver, target)
        advance(driver, period)
        driver.read()
    return steps


def applied_target(driver: Driver) -> np.ndarray | None:
    """The targets the driver applies now, if it exposes them (optional method `applied_target()`)."""
    method = getattr(driver, "applied_target", None)
    if not callable(method):
        return None
    value = method()
    return None if value is None else np.asarray(value, np.float64).reshape(-1)


def ignored_counter(driver: Driver) -> int | None:
    """The driver's count of ignored commands in `health().details` (a key containing 'ignored'), if any."""
    details = driver.health().details
    keys = sorted(k for k, v in details.items()
                  if "ignored" in str(k) and isinstance(v, (int, np.integer)) and not isinstance(v, bool))
    if not keys:
        return None
    key = "ignored_commands" if "ignored_commands" in keys else keys[0]
    return int(details[key])


def require_sample(spec: DriverSpec, sample: Any, when: str) -> SensorSample:
    problems = sample_problems(spec, sample)
    if problems:
        raise CheckFailed(f"{when}: " + "; ".join(problems))
    return sample


def health_of(driver: Driver, when: str) -> Health:
    health = driver.health()
    if not isinstance(health, Health):
        raise CheckFailed(f"health() {when} returned a {type(health).__name__}, not a Health")
    problems = []
    if health.mode not in MODES:
        problems.append(f"mode {health.mode!r} is not one of {list(MODES)}")
    if not isinstance(health.ok, (bool, np.bool_)):
        problems.append(f"ok {health.ok!r} is not a bool")
    if not isinstance(health.message, str):
        problems.append(f"message {health.message!r} is not a str")
    if not isinstance(health.details, dict):
        problems.append(f"details is a {type(health.details).__name__}, not a dict")
    if problems:
        raise CheckFailed(f"health() {when}: " + "; ".join(problems))
    return health


def expect_mode(driver: Driver, mode: str, when: str) -> None:
    actual = health_of(driver, when).mode
    if actual != mode:
        raise CheckFailed(f"{when}, health().mode is {actual!r}, expected {mode!r}")
