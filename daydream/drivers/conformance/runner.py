"""Running the battery: options, results, the report that `daydream driver check` prints (`check_driver`),
and the pytest entry point."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from daydream.drivers.interface import SAFE_MODES, Driver

DriverFactory = Callable[[], Driver]


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


class Drivers:
    """Drivers a check made; all closed when it ends, whatever happened."""

    def __init__(self, factory: DriverFactory) -> None:
        self.factory = factory
        self.made: list[Driver] = []

    def make(self, open: bool = True) -> Driver:
        try:
            driver = self.factory()
        except Exception as exc:
            raise CheckFailed(f"the driver factory raised {describe(exc)}") from exc
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
                error = error or f"close() raised {describe(exc)}"
        return error


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def check(name: str) -> Callable[[Callable[[Drivers, CheckOptions], str]], CheckFunction]:
    """Register a check body: it returns its pass detail or raises CheckFailed."""

    def register(body: Callable[[Drivers, CheckOptions], str]) -> CheckFunction:
        @functools.wraps(body)
        def check(factory: DriverFactory, options: CheckOptions | None = None) -> CheckResult:
            options = options or CheckOptions()
            drivers = Drivers(factory)
            start = time.perf_counter()
            try:
                detail, passed = body(drivers, options), True
            except CheckFailed as exc:
                detail, passed = str(exc), False
            except Exception as exc:  # a driver that raises where the contract says it works fails the check
                detail, passed = f"raised {describe(exc)}", False
            closing = drivers.close_all()
            if closing and passed:
                detail, passed = closing, False
            return CheckResult(name, passed, detail, time.perf_counter() - start)

        CHECKS[name] = check
        return check

    return register


# -- helpers --------------------------------------------------------------------------------

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


def check_driver(target: str, config: str | None = None, overrides: Sequence[str] = (), args: Sequence[str] = (),
                 checks: Iterable[str] | None = None, verbose: bool = False) -> Report:
    """`daydream driver check`: the battery against driver `target` (a registry name or `module:Class`).

    With `config`, the driver gets that config's driver_args, seed, control rate and camera, and the
    watchdog check its safe mode and sample age; `args` (`key=value`, YAML values) add or replace
    driver arguments. Raises ValueError for bad input, before any check runs.
    """
    import yaml

    from daydream.config import load_config
    from daydream.drivers.interface import DriverError
    from daydream.drivers.registry import driver_arguments, driver_class, make_driver

    if overrides and not config:
        raise ValueError("--set overrides keys of a config: it needs --config")
    try:
        cls = driver_class(target)
    except ValueError as exc:
        hint = (" (is the folder holding that package on PYTHONPATH? e.g. `export PYTHONPATH=$PWD` there)"
                if "cannot import" in str(exc) else "")
        raise ValueError(f"{exc}{hint}") from exc
    driver_args: dict = {}
    options = CheckOptions()
    if config:
        loaded = load_config(config, overrides)
        # the config's driver_args, seed, control rate and camera, for the driver under test
        driver_args = driver_arguments(dataclasses.replace(loaded.robot, driver=target), loaded.seed)
        # the safe mode the robot's watchdog will use, and the sample age its env will accept
        options = CheckOptions(safe_mode=loaded.robot.safety.safe_mode, max_age_s=loaded.robot.stale_timeout_s)
    for item in args:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--arg {item!r} must look like key=value (the value is YAML, e.g. start=standing)")
        driver_args[key.strip()] = yaml.safe_load(raw)
    try:
        make_driver(target, driver_args)  # fail here, once, if the arguments are wrong
    except DriverError as exc:
        raise ValueError(f"cannot construct driver {target} with {driver_args}: {exc}") from exc
    label = f"{target} ({cls.__module__}:{cls.__qualname__}), args {driver_args}"
    safety_log = logging.getLogger("daydream.drivers.safety")
    level = safety_log.level
    if not verbose:  # the watchdog check trips the safety layer on purpose; its warnings are noise here
        safety_log.setLevel(logging.ERROR)
    try:
        return run_checks(functools.partial(make_driver, target, driver_args), options, checks=checks, target=label)
    finally:
        safety_log.setLevel(level)
