"""The driver conformance kit: a battery of checks that any `Driver` must pass to join the stack.

This module owns the checks, their report and the pytest entry point. Each check takes a
**driver factory** (a zero-argument callable returning a fresh, unopened driver: a class,
a `functools.partial`, a lambda) and `CheckOptions`, builds its own driver(s), closes
them afterwards and returns a `CheckResult(name, passed, detail)`. `run_checks` runs the
battery and returns a `Report` whose `format()` is what `daydream driver check` prints.

Time: a `SimulatedDriver` is moved on with `advance(seconds)` (the checks never sleep for
it); any other driver is treated as hardware and the checks sleep on the wall clock. The
battery **moves the robot**: on hardware run it with the robot free to move (an arm
clear of obstacles, a legged robot on a stand); the `command_limits` check drives every
joint toward its limits.

The checks and how each decides (in `CHECKS` order):

* `spec`: `driver.spec` exists before `open()` and is well-formed: unique non-empty
  sensor names, shapes that are tuples of positive ints, canonical numeric/bool numpy
  dtype names, units given, finite `low <= high`, `rate_hz >= 0`; a `joint_position`
  sensor with one entry per joint (the safety layer starts from it); actuator joint
  names unique, `low`/`high`/`max_rate`/`torque_limit` one entry per joint, finite
  `low <= high`, positive rates and torques (inf: unbounded); `control_rate_hz > 0`; `safe_modes`
  non-empty, without repeats, from {damping, hold}.
* `health`: `health()` returns a `Health` (valid mode, bool `ok`, str message, dict
  details) before `open()`, and after it mode `active` with `ok` true.
* `read`: after `open()`, and after each of `reads` control periods of commands (random
  targets within the middle 80 % of the range for simulators, the measured pose held on
  hardware), `read()` returns a `SensorSample` holding exactly the declared sensors, each
  a numpy array of the declared shape and dtype, finite (floats), within `[low, high]`.
* `stamps`: over `reads` reads one wait apart (one control period, or the slowest
  sensor's refresh period if longer), stamps strictly increase, are never ahead of
  `now()` and are at most `max_age_s` old; back-to-back reads never go backwards;
  `now()` never goes backwards; a simulator's `advance(s)` moves `now()` by `s`; on
  hardware `now()` keeps pace with the wall clock (seconds).
* `rate`: the mean of `rate_cycles` cycles (after two warm-up cycles) of read + write
  (+ `advance(period)` for a simulator, i.e. it must run at least in real time) must
  take at most one control period.
* `command_shape`: commands with one target too many, one too few, or an extra axis
  must raise; the driver must still read afterwards.
* `command_limits`: a command `limit_margin` of each joint's range above every `high`
  (then below every `low`) is either refused (`write` raises) or clamped. Clamping is
  decided, in this order, by (a) `driver.applied_target()` (an optional method: the
  targets the driver is applying now, after its own clamping) lying within the limits,
  else (b) the measured `joint_position` staying within the limits (plus
  `limit_tolerance` of the range) after the command has been written every control
  period for `settle_s` (advanced in a simulator, slept on hardware).
* `close_reopen`: `close()` leaves `health().mode == "closed"`, a second `close()` does
  not raise, `open()` again gives a valid `read()`, mode `active` and accepted writes.
* `safe_modes`: for each declared safe mode (a fresh driver each): `safe_mode(mode)`
  makes `health().mode` report it; a probe command (`probe_fraction` of each joint's
  range toward its farther limit) written for `settle_s` is ignored and leaves the mode
  as it is; after `resume()` the mode is `active` and the same probe is applied. Ignored
  or applied is decided by (a) `applied_target()` if the driver has it (far from / at
  the probe), else (b) a counter in `health().details` whose key contains "ignored"
  (the MuJoCo A1's `ignored_commands`: it must grow by every ignored write and not at
  all once resumed), else (c) motion: the joints must not get halfway to the probe in
  the safe mode, and must after `resume()`.
* `watchdog`: the driver behind a `SafetyLayer` with `watchdog_timeout_s` (at least two
  control periods) and the configured safe mode (`options.safe_mode`, else damping if
  declared, else the first declared) gets one command; after half the timeout the mode
  is still `active`, after twice the timeout the *driver's* `health().mode` is the safe
  mode; the next command resumes it (auto-resume).

Use from pytest (one import, one line in a user's test file):

    from daydream.drivers.conformance import conformance_tests
    from my_robot.driver import MyDriver

    test_conformance = conformance_tests(MyDriver)      # one test per check

or `run_checks(factory).ok` / `.format()` in any test.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from daydream.drivers.interface import Command, Driver, DriverSpec, Health, SensorSample, SimulatedDriver

DriverFactory = Callable[[], Driver]

MODES = ("closed", "active", "damping", "hold", "estop")
SAFE_MODES = ("damping", "hold")
# numpy kinds a sensor may have: bool, signed and unsigned ints, floats
_DTYPE_KINDS = "biuf"


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """Knobs of the battery; the defaults suit a 20-100 Hz robot."""

    reads: int = 5                    # reads (one wait apart) in the read and stamps checks
    rate_cycles: int = 50             # measured read/write cycles in the rate check
    settle_s: float = 0.5             # how long a command is held before judging its effect
    limit_margin: float = 0.2         # out-of-limit commands exceed the limits by this fraction of the range
    limit_tolerance: float = 0.01     # measured positions may overshoot a limit by this fraction of the range
    probe_fraction: float = 0.2       # safe-mode probe: this fraction of the range toward the farther limit
    watchdog_timeout_s: float = 0.1   # raised to two control periods if shorter
    safe_mode: str | None = None      # the watchdog's safe mode; None: damping if declared, else the first
    max_age_s: float = 0.25           # oldest acceptable sample at read time (robot.stale_timeout_s default)
    seed: int = 0                     # random targets of the read check

    def __post_init__(self) -> None:
        if self.reads < 1 or self.rate_cycles < 1:
            raise ValueError("CheckOptions: reads and rate_cycles must be >= 1")
        for name in ("settle_s", "limit_margin", "limit_tolerance", "watchdog_timeout_s", "max_age_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CheckOptions: {name} must be positive, got {getattr(self, name)!r}")
        if not 0 < self.probe_fraction <= 0.5:
            raise ValueError(f"CheckOptions: probe_fraction must be in (0, 0.5], got {self.probe_fraction!r}")
        if self.safe_mode is not None and self.safe_mode not in SAFE_MODES:
            raise ValueError(f"CheckOptions: safe_mode must be one of {SAFE_MODES} or None, got {self.safe_mode!r}")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0              # wall time the check took


@dataclasses.dataclass(frozen=True)
class Report:
    target: str
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def result(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check {name!r} in this report; it has {[r.name for r in self.results]}")

    def format(self) -> str:
        """One line per check (PASS/FAIL, name, detail), then a summary line."""
        width = max([len(r.name) for r in self.results] + [4])
        lines = [f"driver conformance: {self.target}"]
        for r in self.results:
            lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.detail}")
        total = len(self.results)
        if self.ok:
            lines.append(f"OK: all {total} checks passed")
        else:
            names = ", ".join(r.name for r in self.failed)
            lines.append(f"FAILED: {len(self.failed)} of {total} checks ({names})")
        return "\n".join(lines)


class CheckFailed(Exception):
    """Raised inside a check body: the check fails with this message as its detail."""


CheckFunction = Callable[[DriverFactory, "CheckOptions | None"], CheckResult]  # each returns, never raises
CHECKS: dict[str, CheckFunction] = {}


class _Drivers:
    """Drivers a check made; all closed when it ends, whatever happened."""

    def __init__(self, factory: DriverFactory) -> None:
        self.factory = factory
        self.made: list[Driver] = []

    def make(self, open: bool = True) -> Driver:
        try:
            driver = self.factory()
        except Exception as exc:
            raise CheckFailed(f"the driver factory raised {_describe(exc)}") from exc
        if not isinstance(driver, Driver):
            raise CheckFailed(f"the factory returned a {type(driver).__name__}, not a daydream Driver")
        self.made.append(driver)
        if open:
            driver.open()
        return driver

    def close_all(self) -> str:
        """Close every driver; the first error, described, or ''."""
        error = ""
        for driver in self.made:
            try:
                driver.close()
            except Exception as exc:  # report it, but close the others
                error = error or f"close() raised {_describe(exc)}"
        return error


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check(name: str) -> Callable[[Callable[[_Drivers, CheckOptions], str]], CheckFunction]:
    """Register a check body: it returns its pass detail or raises CheckFailed."""

    def register(body: Callable[[_Drivers, CheckOptions], str]) -> CheckFunction:
        @functools.wraps(body)
        def check(factory: DriverFactory, options: CheckOptions | None = None) -> CheckResult:
            options = options or CheckOptions()
            drivers = _Drivers(factory)
            start = time.perf_counter()
            try:
                detail, passed = body(drivers, options), True
            except CheckFailed as exc:
                detail, passed = str(exc), False
            except Exception as exc:  # a driver that raises where the contract says it works fails the check
                detail, passed = f"raised {_describe(exc)}", False
            closing = drivers.close_all()
            if closing and passed:
                detail, passed = closing, False
            return CheckResult(name, passed, detail, time.perf_counter() - start)

        CHECKS[name] = check
        return check

    return register


# -- helpers --------------------------------------------------------------------------------

def _simulated(driver: Driver) -> bool:
    return isinstance(driver, SimulatedDriver)


def _period(spec: DriverSpec) -> float:
    return 1.0 / spec.control_rate_hz


def _wait(driver: Driver, seconds: float) -> None:
    """Let `seconds` of driver time pass: simulated by advance(), else slept."""
    if seconds <= 0:
        return
    if isinstance(driver, SimulatedDriver):
        driver.advance(seconds)
    else:
        time.sleep(seconds)


def _limits(spec: DriverSpec) -> tuple[np.ndarray, np.ndarray]:
    return spec.actuator.low_array(), spec.actuator.high_array()


def _measured(driver: Driver) -> np.ndarray:
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


def _hold(driver: Driver) -> np.ndarray:
    """A command that keeps the robot where it is: the measured pose, inside the limits."""
    low, high = _limits(driver.spec)
    return np.clip(_measured(driver), low, high)


def _write(driver: Driver, target: np.ndarray) -> None:
    driver.write(Command(np.array(target, np.float64), stamp=driver.now()))


def _drive(driver: Driver, target: np.ndarray, seconds: float) -> int:
    """Write `target` every control period for `seconds` (reading each period, as an env does); the write count."""
    period = _period(driver.spec)
    steps = max(1, math.ceil(seconds / period - 1e-9))
    for _ in range(steps):
        _write(driver, target)
        _wait(driver, period)
        driver.read()
    return steps


def applied_target(driver: Driver) -> np.ndarray | None:
    """The targets the driver applies now, if it exposes them (optional method `applied_target()`)."""
    method = getattr(driver, "applied_target", None)
    if not callable(method):
        return None
    value = method()
    return None if value is None else np.asarray(value, np.float64).reshape(-1)


def _ignored_counter(driver: Driver) -> int | None:
    """The driver's count of ignored commands in `health().details` (a key containing 'ignored'), if any."""
    details = driver.health().details
    keys = sorted(k for k, v in details.items()
                  if "ignored" in str(k) and isinstance(v, (int, np.integer)) and not isinstance(v, bool))
    if not keys:
        return None
    key = "ignored_commands" if "ignored_commands" in keys else keys[0]
    return int(details[key])


def _fmt(values: Iterable[float]) -> str:
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
            problems.append(f"actuator {field} must be positive, got {_fmt(arrays[field])}")
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


def _require_sample(spec: DriverSpec, sample: Any, when: str) -> SensorSample:
    problems = sample_problems(spec, sample)
    if problems:
        raise CheckFailed(f"{when}: " + "; ".join(problems))
    return sample


def _health(driver: Driver, when: str) -> Health:
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


def _expect_mode(driver: Driver, mode: str, when: str) -> None:
    actual = _health(driver, when).mode
    if actual != mode:
        raise CheckFailed(f"{when}, health().mode is {actual!r}, expected {mode!r}")


# -- the checks -----------------------------------------------------------------------------

@_check("spec")
def check_spec(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make(open=False)
    spec = getattr(driver, "spec", None)
    if not isinstance(spec, DriverSpec):
        raise CheckFailed(f"{type(driver).__name__} has no `spec` (a DriverSpec) before open(); envs and the "
                          "safety layer read it before opening the driver")
    problems = spec_problems(spec)
    if problems:
        raise CheckFailed("; ".join(problems))
    kind = "simulated (advance() instead of sleeping)" if _simulated(driver) else "hardware (wall clock)"
    return (f"{spec.name}: {spec.actuator.size} joints ({spec.actuator.unit}), {len(spec.sensors)} sensors, "
            f"{spec.control_rate_hz:g} Hz, safe modes {', '.join(spec.safe_modes)}; {kind}")


@_check("health")
def check_health(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make(open=False)
    before = _health(driver, "before open()")
    driver.open()
    after = _health(driver, "after open()")
    if after.mode != "active":
        raise CheckFailed(f"after open(), health().mode is {after.mode!r}, expected 'active'")
    if not after.ok:
        raise CheckFailed(f"after open(), health().ok is false: {after.message!r}")
    return f"a Health before open() (mode {before.mode}) and after (mode active, ok)"


@_check("read")
def check_read(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make()
    spec = driver.spec
    _require_sample(spec, driver.read(), "read() after open()")
    low, high = _limits(spec)
    simulated = _simulated(driver)
    rng = np.random.default_rng(options.seed)
    hold = _hold(driver)
    for i in range(options.reads):
        # Simulators are shaken about so readings cover more than the start pose; hardware holds still.
        target = rng.uniform(low + 0.1 * (high - low), high - 0.1 * (high - low)) if simulated else hold
        _write(driver, target)
        _wait(driver, _period(spec))
        _require_sample(spec, driver.read(), f"read {i + 2}")
    moved = "random in-limit targets" if simulated else "the measured pose held"
    return (f"{options.reads + 1} reads ({moved}): all {len(spec.sensors)} sensors with the declared shapes, "
            f"dtypes and bounds, finite")


@_check("stamps")
def check_stamps(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make()
    spec = driver.spec
    simulated = _simulated(driver)
    refresh = [1.0 / s.rate_hz for s in spec.sensors if s.rate_hz > 0]
    wait = max([_period(spec), *refresh])
    clock = driver.now()
    sample = driver.read()
    previous = float(sample.stamp)
    worst_age = 0.0
    for i in range(options.reads):
        before, wall = driver.now(), time.perf_counter()
        if before < clock:
            raise CheckFailed(f"now() went backwards from {clock!r} to {before!r}")
        _wait(driver, wait)
        after, wall = driver.now(), time.perf_counter() - wall
        elapsed = after - before
        if simulated:
            if abs(elapsed - wait) > max(1e-3, 0.01 * wait):
                raise CheckFailed(f"advance({wait:g}) moved now() by {elapsed:.6g} s")
        elif not (0.5 * wall - 0.005 <= elapsed <= 1.5 * wall + 0.02):
            raise CheckFailed(f"now() moved {elapsed:.6g} s over {wall:.3f} s of wall time; use a monotonic wall "
                              "clock in seconds (time.monotonic())")
        sample = driver.read()
        now = driver.now()
        stamp = float(sample.stamp)
        if not stamp > previous:
            raise CheckFailed(f"stamp did not increase: read {i + 2} is stamped {stamp!r}, the one {wait:g} s "
                              f"before it {previous!r}; stamp each sample with now() when it was taken")
        if stamp > now + 1e-6:
            raise CheckFailed(f"read {i + 2} is stamped {stamp!r}, ahead of now() = {now!r}")
        age = now - stamp
        if age > options.max_age_s:
            raise CheckFailed(f"read {i + 2} is {age:.3f} s old when returned (more than {options.max_age_s} s: "
                              "the robot env would report stale sensors)")
        worst_age = max(worst_age, age)
        again = float(driver.read().stamp)
        if again < stamp:
            raise CheckFailed(f"back-to-back reads went backwards: {stamp!r} then {again!r}")
        clock, previous = driver.now(), again
    return (f"{options.reads + 1} reads {1000 * wait:.0f} ms apart: stamps increase, never ahead of now(), at most "
            f"{1000 * worst_age:.1f} ms old; now() monotonic")


@_check("rate")
def check_rate(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make()
    spec = driver.spec
    period = _period(spec)
    simulated = _simulated(driver)
    hold = _hold(driver)
    durations = []
    for i in range(options.rate_cycles + 2):
        start = time.perf_counter()
        driver.read()
        _write(driver, hold)
        if simulated:
            driver.advance(period)
        if i >= 2:  # the first cycles may pay for lazy set-up
            durations.append(time.perf_counter() - start)
    mean, worst = float(np.mean(durations)), float(np.max(durations))
    cycle = "read+write+advance" if simulated else "read+write"
    if mean > period:
        raise CheckFailed(f"a {cycle} cycle takes {1000 * mean:.2f} ms on average (worst {1000 * worst:.2f} ms), "
                          f"longer than the {1000 * period:.2f} ms control period at {spec.control_rate_hz:g} Hz")
    extra = f" ({period / mean:.0f}x real time)" if simulated else ""
    return (f"{cycle} cycle {1000 * mean:.2f} ms mean, {1000 * worst:.2f} ms worst, within the "
            f"{1000 * period:.1f} ms period{extra}")


@_check("command_shape")
def check_command_shape(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make()
    spec = driver.spec
    n = spec.actuator.size
    hold = _hold(driver)
    wrong = [np.append(hold, hold[-1]), hold[None, :]]
    wrong.append(hold[:-1] if n > 1 else np.repeat(hold, 3))
    for position in wrong:
        try:
            driver.write(Command(position.copy(), stamp=driver.now()))
        except Exception:
            continue
        raise CheckFailed(f"write() accepted a command of shape {position.shape} for {n} joints; it must raise "
                          f"(e.g. DriverError) for anything but shape ({n},)")
    _require_sample(spec, driver.read(), "read() after the refused commands")
    return f"commands of shapes {', '.join(str(p.shape) for p in wrong)} raise; reads work afterwards"


@_check("command_limits")
def check_command_limits(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make()
    spec = driver.spec
    low, high = _limits(spec)
    span = high - low
    margin = options.limit_margin * np.maximum(span, 1e-3)
    tolerance = options.limit_tolerance * span + 1e-9
    names = spec.actuator.joint_names
    outcomes = []
    for side, command in (("above high", high + margin), ("below low", low - margin)):
        try:
            _write(driver, command)
        except Exception as exc:
            outcomes.append(f"{side}: refused ({type(exc).__name__})")
            _require_sample(spec, driver.read(), f"read() after refusing a command {side}")
            _write(driver, _hold(driver))  # the driver must take in-limit commands after a refusal
            continue
        applied = applied_target(driver)
        if applied is not None:
            outside = (applied < low - 1e-9) | (applied > high + 1e-9)
            if applied.shape != low.shape or outside.any():
                bad = [names[i] for i in np.flatnonzero(outside)] if applied.shape == low.shape else []
                raise CheckFailed(f"a command {side} was accepted and applied_target() reports {_fmt(applied)}, "
                                  f"outside the limits at {bad or 'every joint (wrong shape)'}: clamp commands to "
                                  "[low, high] or raise")
            outcomes.append(f"{side}: clamped (applied_target() within the limits)")
            continue
        try:
            _drive(driver, command, options.settle_s)
        except Exception as exc:  # refusing a repeat of the command is also a refusal
            outcomes.append(f"{side}: refused on a repeat ({type(exc).__name__})")
            continue
        position = _measured(driver)
        over = np.maximum(position - (high + tolerance), (low - tolerance) - position)
        if np.any(over > 0):
            worst = int(np.argmax(over))
            raise CheckFailed(f"a command {side} was accepted and after {options.settle_s:g} s joint "
                              f"{names[worst]!r} is at {position[worst]:.4g}, outside [{low[worst]:.4g}, "
                              f"{high[worst]:.4g}] (tolerance {tolerance[worst]:.3g}): clamp commands to the "
                              "declared limits or raise")
        outcomes.append(f"{side}: clamped (joints within the limits after {options.settle_s:g} s)")
    return "; ".join(outcomes)


@_check("close_reopen")
def check_close_reopen(drivers: _Drivers, options: CheckOptions) -> str:
    driver = drivers.make()
    spec = driver.spec
    _require_sample(spec, driver.read(), "read() after open()")
    driver.close()
    _expect_mode(driver, "closed", "after close()")
    try:
        driver.close()
    except Exception as exc:
        raise CheckFailed(f"a second close() raised {_describe(exc)}; close() must be idempotent") from exc
    driver.open()
    _expect_mode(driver, "active", "after close() and open()")
    _require_sample(spec, driver.read(), "read() after reopening")
    _write(driver, _hold(driver))
    _wait(driver, _period(spec))
    _require_sample(spec, driver.read(), "read() after a write on the reopened driver")
    driver.close()
    return "close() reports mode closed and is idempotent; open() again reads, writes and reports active"


def _probe(driver: Driver, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(where the joints are, a target `fraction` of each range away from it toward the farther limit)."""
    low, high = _limits(driver.spec)
    start = _hold(driver)
    direction = np.where(start <= (low + high) / 2, 1.0, -1.0)
    return start, np.clip(start + direction * fraction * (high - low), low, high)


def _distance(driver: Driver, target: np.ndarray) -> float:
    return float(np.linalg.norm(_measured(driver) - target))


@_check("safe_modes")
def check_safe_modes(drivers: _Drivers, options: CheckOptions) -> str:
    outcomes = []
    modes = tuple(drivers.make(open=False).spec.safe_modes)
    if not modes:
        raise CheckFailed("the driver declares no safe modes")
    for mode in modes:
        driver = drivers.make()
        low, high = _limits(driver.spec)
        tolerance = options.limit_tolerance * (high - low) + 1e-9
        start, probe = _probe(driver, options.probe_fraction)
        _write(driver, start)
        _wait(driver, _period(driver.spec))
        counter = _ignored_counter(driver)
        driver.safe_mode(mode, "conformance check")  # type: ignore[arg-type]
        _expect_mode(driver, mode, f"after safe_mode({mode!r})")
        entry_distance = _distance(driver, probe)
        writes = _drive(driver, probe, options.settle_s)
        _expect_mode(driver, mode, f"after writes in safe mode {mode!r} (only resume() leaves it)")
        applied = applied_target(driver)
        after = _ignored_counter(driver)
        if applied is not None:
            how = "applied_target()"
            if applied.shape == probe.shape and np.all(np.abs(applied - probe) <= tolerance):
                raise CheckFailed(f"in safe mode {mode!r} a written command was applied (applied_target() "
                                  f"{_fmt(applied)} is the command); writes must be ignored until resume()")
        elif counter is not None and after is not None:
            how = "the ignored-commands count in health().details"
            if after - counter < writes:
                raise CheckFailed(f"in safe mode {mode!r}, {writes} writes raised the ignored-commands count in "
                                  f"health().details by {after - counter}; each must be ignored (and counted) "
                                  "until resume()")
        else:
            how = "joint motion"
            safe_distance = _distance(driver, probe)
            if safe_distance < 0.5 * entry_distance:
                raise CheckFailed(f"in safe mode {mode!r} the joints moved toward a written command (distance "
                                  f"{entry_distance:.3g} -> {safe_distance:.3g} in {options.settle_s:g} s); writes "
                                  "must be ignored until resume()")
        driver.resume()
        _expect_mode(driver, "active", f"after safe_mode({mode!r}) and resume()")
        counter = _ignored_counter(driver)
        resume_distance = _distance(driver, probe)
        _drive(driver, probe, options.settle_s)
        if applied is not None:
            applied = applied_target(driver)
            if applied is None or applied.shape != probe.shape or np.any(np.abs(applied - probe) > tolerance):
                raise CheckFailed(f"after resume() from {mode!r} a written command was not applied "
                                  f"(applied_target() {applied if applied is None else _fmt(applied)}, command "
                                  f"{_fmt(probe)})")
        elif how.startswith("the ignored"):
            after = _ignored_counter(driver)
            if after is None or counter is None or after != counter:
                raise CheckFailed(f"after resume() from {mode!r} writes are still counted as ignored in "
                                  "health().details")
        else:
            active_distance = _distance(driver, probe)
            if not active_distance <= 0.5 * resume_distance:
                raise CheckFailed(f"after resume() from {mode!r} the joints did not follow a command within "
                                  f"{options.settle_s:g} s (distance {resume_distance:.3g} -> {active_distance:.3g}), "
                                  "so the check cannot tell ignored writes from slow joints: give the driver an "
                                  "applied_target() method or count ignored writes in health().details"
                                  "['ignored_commands']")
        outcomes.append(mode)
        driver.close()
    return f"{', '.join(outcomes)}: engaged (health().mode), writes ignored until resume() (judged by {how})"


@_check("watchdog")
def check_watchdog(drivers: _Drivers, options: CheckOptions) -> str:
    from daydream.drivers.safety import SafetyConfig, SafetyLayer

    driver = drivers.make(open=False)
    spec = driver.spec
    declared = tuple(spec.safe_modes)
    mode = options.safe_mode or ("damping" if "damping" in declared else (declared[0] if declared else "damping"))
    if mode not in declared:
        raise CheckFailed(f"the watchdog's safe mode {mode!r} is not among the driver's safe modes {list(declared)}")
    period = _period(spec)
    timeout = max(options.watchdog_timeout_s, 2 * period)
    try:
        layer = SafetyLayer(driver, SafetyConfig(watchdog_timeout_s=timeout, safe_mode=mode))  # type: ignore[arg-type]
    except ValueError as exc:
        raise CheckFailed(f"the safety layer refuses this driver: {exc}") from exc
    layer.open()

    def let_pass(seconds: float) -> None:
        # Tick at the control rate, as the env and the ROS node do.
        steps = max(1, math.ceil(seconds / period - 1e-9))
        for _ in range(steps):
            _wait(layer, period)
            layer.tick()

    layer.write(Command(_hold(driver), stamp=driver.now()))
    written = driver.now()
    let_pass(timeout / 2)
    silent = driver.now() - written
    if silent < timeout:  # every tick so far saw less silence than the timeout (a slow sleep may overshoot it)
        _expect_mode(driver, "active", f"{silent:.3g} s after a command (watchdog timeout {timeout:g} s)")
    let_pass(1.5 * timeout)
    inner = _health(driver, "after the watchdog timeout").mode
    if inner != mode:
        layer_mode = layer.health().mode
        raise CheckFailed(f"{2 * timeout:g} s without a command (watchdog timeout {timeout:g} s): the safety layer "
                          f"is in {layer_mode!r} but the driver's health().mode is {inner!r}, not {mode!r}")
    layer.write(Command(_hold(driver), stamp=driver.now()))
    _expect_mode(driver, "active", "after the next command (watchdog auto-resume)")
    layer.close()
    return (f"no command for {2 * timeout:g} s (timeout {timeout:g} s) puts the driver in {mode}; the next command "
            "resumes it")


# -- running the battery --------------------------------------------------------------------

def run_check(name: str, factory: DriverFactory, options: CheckOptions | None = None) -> CheckResult:
    """Run one check by name."""
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; the checks are {list(CHECKS)}")
    return CHECKS[name](factory, options)


def run_checks(factory: DriverFactory, options: CheckOptions | None = None, checks: Iterable[str] | None = None,
               target: str | None = None) -> Report:
    """Run the battery (or the named `checks`, in battery order) against drivers made by `factory`."""
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are {list(CHECKS)}")
    names = [n for n in CHECKS if n in names]
    label = target if target is not None else getattr(factory, "__qualname__", None) or repr(factory)
    return Report(label, tuple(CHECKS[n](factory, options) for n in names))


def conformance_tests(factory: DriverFactory, options: CheckOptions | None = None,
                      checks: Iterable[str] | None = None) -> Callable[[str], None]:
    """A pytest test function parametrized over the checks; assign it to a `test_...` name in a test module.

        test_conformance = conformance_tests(MyDriver)

    runs as `test_conformance[spec]`, `test_conformance[read]`, ...; a failing check fails
    its test with the check's detail.
    """
    import pytest

    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are {list(CHECKS)}")

    @pytest.mark.parametrize("check", names)
    def test_driver_conformance(check: str) -> None:
        result = run_check(check, factory, options)
        if not result.passed:
            pytest.fail(f"driver conformance check {check!r} failed: {result.detail}", pytrace=False)

    return test_driver_conformance


__all__ = ["CHECKS", "CheckFailed", "CheckOptions", "CheckResult", "DriverFactory", "Report", "applied_target",
           "conformance_tests", "run_check", "run_checks", "sample_problems", "spec_problems"]
