"""The battery's checks: each builds its own drivers, exercises one part of the `Driver` contract and
returns its pass detail or raises `CheckFailed`. Registered in battery order by `@check`.

Time: a `SimulatedDriver` is moved on with `advance(seconds)` (the checks never sleep for it); any
other driver is treated as hardware and the checks sleep on the wall clock. The battery **moves the
robot**: on hardware run it with the robot free to move (an arm clear of obstacles, a legged robot on
a stand); the `command_limits` check drives every joint toward its limits.
"""

from __future__ import annotations

import math
import time

import numpy as np

from daydream.drivers.conformance.driving import (applied_target, drive, expect_mode, health_of, hold_target,
                                                ignored_counter, is_simulated, limits_of, measured, period_of,
                                                require_sample, advance, write_target)
from daydream.drivers.conformance.runner import CheckFailed, CheckOptions, Drivers, check, describe
from daydream.drivers.conformance.validators import fmt as _fmt, spec_problems
from daydream.drivers.interface import Command, Driver, DriverSpec


# -- the checks -----------------------------------------------------------------------------

@check("spec")
def check_spec(drivers: Drivers, options: CheckOptions) -> str:
    """`driver.spec` exists before `open()` and is well-formed: unique non-empty sensor names, shapes that are
    tuples of positive ints, canonical numeric/bool numpy dtype names, units given, finite `low <= high`,
    `rate_hz >= 0`; a `joint_position` sensor with one entry per joint (the safety layer starts from it);
    actuator joint names unique, `low`/`high`/`max_rate`/`torque_limit` one entry per joint, finite `low <=
    high`, positive rates and torques (inf: unbounded); `control_rate_hz > 0`; `safe_modes` non-empty, without
    repeats, from {damping, hold}.
    """
    driver = drivers.make(open=False)
    spec = getattr(driver, "spec", None)
    if not isinstance(spec, DriverSpec):
        raise CheckFailed(f"{type(driver).__name__} has no `spec` (a DriverSpec) before open(); envs and the "
                          "safety layer read it before opening the driver")
    problems = spec_problems(spec)
    if problems:
        raise CheckFailed("; ".join(problems))
    kind = "simulated (advance() instead of sleeping)" if is_simulated(driver) else "hardware (wall clock)"
    return (f"{spec.name}: {spec.actuator.size} joints ({spec.actuator.unit}), {len(spec.sensors)} sensors, "
            f"{spec.control_rate_hz:g} Hz, safe modes {', '.join(spec.safe_modes)}; {kind}")


@check("health")
def check_health(drivers: Drivers, options: CheckOptions) -> str:
    """`health()` returns a `Health` (valid mode, bool `ok`, str message, dict details) before `open()`, and after
    it mode `active` with `ok` true.
    """
    driver = drivers.make(open=False)
    before = health_of(driver, "before open()")
    driver.open()
    after = health_of(driver, "after open()")
    if after.mode != "active":
        raise CheckFailed(f"after open(), health().mode is {after.mode!r}, expected 'active'")
    if not after.ok:
        raise CheckFailed(f"after open(), health().ok is false: {after.message!r}")
    return f"a Health before open() (mode {before.mode}) and after (mode active, ok)"


@check("read")
def check_read(drivers: Drivers, options: CheckOptions) -> str:
    """After `open()`, and after each of `reads` control periods of commands (random targets within the middle 80 %
    of the range for simulators, the measured pose held on hardware), `read()` returns a `SensorSample` holding
    exactly the declared sensors, each a numpy array of the declared shape and dtype, finite (floats), within
    `[low, high]`.
    """
    driver = drivers.make()
    spec = driver.spec
    require_sample(spec, driver.read(), "read() after open()")
    low, high = limits_of(spec)
    simulated = is_simulated(driver)
    rng = np.random.default_rng(options.seed)
    hold = hold_target(driver)
    for i in range(options.reads):
        # Simulators are shaken about so readings cover more than the start pose; hardware holds still.
        target = rng.uniform(low + 0.1 * (high - low), high - 0.1 * (high - low)) if simulated else hold
        write_target(driver, target)
        advance(driver, period_of(spec))
        require_sample(spec, driver.read(), f"read {i + 2}")
    moved = "random in-limit targets" if simulated else "the measured pose held"
    return (f"{options.reads + 1} reads ({moved}): all {len(spec.sensors)} sensors with the declared shapes, "
            f"dtypes and bounds, finite")


@check("stamps")
def check_stamps(drivers: Drivers, options: CheckOptions) -> str:
    """Over `reads` reads one wait apart (one control period, or the slowest sensor's refresh period if longer),
    stamps strictly increase, are never ahead of `now()` and are at most `max_age_s` old; back-to-back reads
    never go backwards; `now()` never goes backwards; a simulator's `advance(s)` moves `now()` by `s`; on
    hardware `now()` keeps pace with the wall clock (seconds).
    """
    driver = drivers.make()
    spec = driver.spec
    simulated = is_simulated(driver)
    refresh = [1.0 / s.rate_hz for s in spec.sensors if s.rate_hz > 0]
    wait = max([period_of(spec), *refresh])
    clock = driver.now()
    sample = driver.read()
    previous = float(sample.stamp)
    worst_age = 0.0
    for i in range(options.reads):
        before, wall = driver.now(), time.perf_counter()
        if before < clock:
            raise CheckFailed(f"now() went backwards from {clock!r} to {before!r}")
        advance(driver, wait)
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


@check("rate")
def check_rate(drivers: Drivers, options: CheckOptions) -> str:
    """The mean of `rate_cycles` cycles (after two warm-up cycles) of read + write (+ `advance(period)` for a
    simulator, i.e. it must run at least in real time) must take at most one control period.
    """
    driver = drivers.make()
    spec = driver.spec
    period = period_of(spec)
    simulated = is_simulated(driver)
    hold = hold_target(driver)
    durations = []
    for i in range(options.rate_cycles + 2):
        start = time.perf_counter()
        driver.read()
        write_target(driver, hold)
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


@check("command_shape")
def check_command_shape(drivers: Drivers, options: CheckOptions) -> str:
    """Commands with one target too many, one too few, or an extra axis must raise; the driver must still read
    afterwards.
    """
    driver = drivers.make()
    spec = driver.spec
    n = spec.actuator.size
    hold = hold_target(driver)
    wrong = [np.append(hold, hold[-1]), hold[None, :]]
    wrong.append(hold[:-1] if n > 1 else np.repeat(hold, 3))
    for position in wrong:
        try:
            driver.write(Command(position.copy(), stamp=driver.now()))
        except Exception:
            continue
        raise CheckFailed(f"write() accepted a command of shape {position.shape} for {n} joints; it must raise "
                          f"(e.g. DriverError) for anything but shape ({n},)")
    require_sample(spec, driver.read(), "read() after the refused commands")
    return f"commands of shapes {', '.join(str(p.shape) for p in wrong)} raise; reads work afterwards"


@check("command_limits")
def check_command_limits(drivers: Drivers, options: CheckOptions) -> str:
    """A command `limit_margin` of each joint's range above every `high` (then below every `low`) is either refused
    (`write` raises) or clamped. Clamping is decided, in this order, by (a) `driver.applied_target()` (an
    optional method: the targets the driver is applying now, after its own clamping) lying within the limits,
    else (b) the measured `joint_position` staying within the limits (plus `limit_tolerance` of the range) after
    the command has been written every control period for `settle_s` (advanced in a simulator, slept on
    hardware).
    """
    driver = drivers.make()
    spec = driver.spec
    low, high = limits_of(spec)
    span = high - low
    margin = options.limit_margin * np.maximum(span, 1e-3)
    tolerance = options.limit_tolerance * span + 1e-9
    names = spec.actuator.joint_names
    outcomes = []
    for side, command in (("above high", high + margin), ("below low", low - margin)):
        try:
            write_target(driver, command)
        except Exception as exc:
            outcomes.append(f"{side}: refused ({type(exc).__name__})")
            require_sample(spec, driver.read(), f"read() after refusing a command {side}")
            write_target(driver, hold_target(driver))  # the driver must take in-limit commands after a refusal
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
            drive(driver, command, options.settle_s)
        except Exception as exc:  # refusing a repeat of the command is also a refusal
            outcomes.append(f"{side}: refused on a repeat ({type(exc).__name__})")
            continue
        position = measured(driver)
        over = np.maximum(position - (high + tolerance), (low - tolerance) - position)
        if np.any(over > 0):
            worst = int(np.argmax(over))
            raise CheckFailed(f"a command {side} was accepted and after {options.settle_s:g} s joint "
                              f"{names[worst]!r} is at {position[worst]:.4g}, outside [{low[worst]:.4g}, "
                              f"{high[worst]:.4g}] (tolerance {tolerance[worst]:.3g}): clamp commands to the "
                              "declared limits or raise")
        outcomes.append(f"{side}: clamped (joints within the limits after {options.settle_s:g} s)")
    return "; ".join(outcomes)


@check("close_reopen")
def check_close_reopen(drivers: Drivers, options: CheckOptions) -> str:
    """`close()` leaves `health().mode == "closed"`, a second `close()` does not raise, `open()` again gives a
    valid `read()`, mode `active` and accepted writes.
    """
    driver = drivers.make()
    spec = driver.spec
    require_sample(spec, driver.read(), "read() after open()")
    driver.close()
    expect_mode(driver, "closed", "after close()")
    try:
        driver.close()
    except Exception as exc:
        raise CheckFailed(f"a second close() raised {describe(exc)}; close() must be idempotent") from exc
    driver.open()
    expect_mode(driver, "active", "after close() and open()")
    require_sample(spec, driver.read(), "read() after reopening")
    write_target(driver, hold_target(driver))
    advance(driver, period_of(spec))
    require_sample(spec, driver.read(), "read() after a write on the reopened driver")
    driver.close()
    return "close() reports mode closed and is idempotent; open() again reads, writes and reports active"


def _probe(driver: Driver, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(where the joints are, a target `fraction` of each range away from it toward the farther limit)."""
    low, high = limits_of(driver.spec)
    start = hold_target(driver)
    direction = np.where(start <= (low + high) / 2, 1.0, -1.0)
    return start, np.clip(start + direction * fraction * (high - low), low, high)


def _distance(driver: Driver, target: np.ndarray) -> float:
    return float(np.linalg.norm(measured(driver) - target))


@check("safe_modes")
def check_safe_modes(drivers: Drivers, options: CheckOptions) -> str:
    """For each declared safe mode (a fresh driver each): `safe_mode(mode)` makes `health().mode` report it; a
    probe command (`probe_fraction` of each joint's range toward its farther limit) written for `settle_s` is
    ignored and leaves the mode as it is; after `resume()` the mode is `active` and the same probe is applied.
    Ignored or applied is decided by (a) `applied_target()` if the driver has it (far from / at the probe), else
    (b) a counter in `health().details` whose key contains "ignored" (the MuJoCo A1's `ignored_commands`: it
    must grow by every ignored write and not at all once resumed), else (c) motion: the joints must not get
    halfway to the probe in the safe mode, and must after `resume()`.
    """
    outcomes = []
    modes = tuple(drivers.make(open=False).spec.safe_modes)
    if not modes:
        raise CheckFailed("the driver declares no safe modes")
    for mode in modes:
        driver = drivers.make()
        low, high = limits_of(driver.spec)
        tolerance = options.limit_tolerance * (high - low) + 1e-9
        start, probe = _probe(driver, options.probe_fraction)
        write_target(driver, start)
        advance(driver, period_of(driver.spec))
        counter = ignored_counter(driver)
        driver.safe_mode(mode, "conformance check")  # type: ignore[arg-type]
        expect_mode(driver, mode, f"after safe_mode({mode!r})")
        entry_distance = _distance(driver, probe)
        writes = drive(driver, probe, options.settle_s)
        expect_mode(driver, mode, f"after writes in safe mode {mode!r} (only resume() leaves it)")
        applied = applied_target(driver)
        after = ignored_counter(driver)
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
        expect_mode(driver, "active", f"after safe_mode({mode!r}) and resume()")
        counter = ignored_counter(driver)
        resume_distance = _distance(driver, probe)
        drive(driver, probe, options.settle_s)
        if applied is not None:
            applied = applied_target(driver)
            if applied is None or applied.shape != probe.shape or np.any(np.abs(applied - probe) > tolerance):
                raise CheckFailed(f"after resume() from {mode!r} a written command was not applied "
                                  f"(applied_target() {applied if applied is None else _fmt(applied)}, command "
                                  f"{_fmt(probe)})")
        elif how.startswith("the ignored"):
            after = ignored_counter(driver)
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


@check("watchdog")
def check_watchdog(drivers: Drivers, options: CheckOptions) -> str:
    """The driver behind a `SafetyLayer` with `watchdog_timeout_s` (at least two control periods) and the
    configured safe mode (`options.safe_mode`, else damping if declared, else the first declared) gets one
    command; after half the timeout the mode is still `active`, after twice the timeout the *driver's*
    `health().mode` is the safe mode; the next command resumes it (auto-resume).
    """
    from daydream.drivers.safety import SafetyConfig, SafetyLayer

    driver = drivers.make(open=False)
    spec = driver.spec
    declared = tuple(spec.safe_modes)
    mode = options.safe_mode or ("damping" if "damping" in declared else (declared[0] if declared else "damping"))
    if mode not in declared:
        raise CheckFailed(f"the watchdog's safe mode {mode!r} is not among the driver's safe modes {list(declared)}")
    period = period_of(spec)
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
            advance(layer, period)
            layer.tick()

    layer.write(Command(hold_target(driver), stamp=driver.now()))
    written = driver.now()
    let_pass(timeout / 2)
    silent = driver.now() - written
    if silent < timeout:  # every tick so far saw less silence than the timeout (a slow sleep may overshoot it)
        expect_mode(driver, "active", f"{silent:.3g} s after a command (watchdog timeout {timeout:g} s)")
    let_pass(1.5 * timeout)
    inner = health_of(driver, "after the watchdog timeout").mode
    if inner != mode:
        layer_mode = layer.health().mode
        raise CheckFailed(f"{2 * timeout:g} s without a command (watchdog timeout {timeout:g} s): the safety layer "
                          f"is in {layer_mode!r} but the driver's health().mode is {inner!r}, not {mode!r}")
    layer.write(Command(hold_target(driver), stamp=driver.now()))
    expect_mode(driver, "active", "after the next command (watchdog auto-resume)")
    layer.close()
    return (f"no command for {2 * timeout:g} s (timeout {timeout:g} s) puts the driver in {mode}; the next command "
            "resumes it")
