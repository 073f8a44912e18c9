"""The driver conformance kit (`daydream.drivers.conformance`), `daydream driver check` and
`daydream new-robot`: the kit passes the MuJoCo A1 and a hardware-like (wall-clock) driver,
fails deliberately broken drivers on the check that names their fault, runs as pytest tests,
and the scaffold passes the kit and its own tests unchanged."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from daydream.cli import main
from daydream.drivers import (ActuatorSpec, Command, Driver, DriverError, DriverSpec, Health, SensorSample,
                              SensorSpec)
from daydream.drivers.conformance import (CHECKS, CheckOptions, CheckResult, Report, conformance_tests, run_check,
                                          run_checks)
from daydream.drivers.mujoco_a1 import MuJoCoA1Driver
from daydream.drivers.scaffold import check_name, new_robot, scaffold_files

REPO = Path(__file__).resolve().parents[1]
A1 = functools.partial(MuJoCoA1Driver, start="standing")


# -- deliberately broken A1s (module level: the CLI test names them as module:Class) ------

class WrongShapeA1(MuJoCoA1Driver):
    """Reads one joint position short."""

    def read(self) -> SensorSample:
        sample = super().read()
        return dataclasses.replace(sample, values={**sample.values,
                                                   "joint_position": sample.values["joint_position"][:11]})


class FrozenStampA1(MuJoCoA1Driver):
    """Stamps every sample with the time it was opened."""

    def read(self) -> SensorSample:
        return dataclasses.replace(super().read(), stamp=0.0)


class NoSafeModeA1(MuJoCoA1Driver):
    """Ignores safe-mode requests: stays active."""

    def safe_mode(self, mode, reason: str = "") -> None:
        pass


class UnclampedA1(MuJoCoA1Driver):
    """Takes targets beyond the joint limits as they come."""

    def write(self, command: Command) -> None:
        super().write(command)
        if self._modes.mode == "active":
            self._target = np.asarray(command.position, np.float64).copy()


class ObeysInSafeModeA1(MuJoCoA1Driver):
    """Reports its safe mode but takes (and does not count as ignored) the commands written in it."""

    def write(self, command: Command) -> None:
        self._target = np.clip(np.asarray(command.position, np.float64), self._low, self._high)


class BadSpecA1(MuJoCoA1Driver):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = dataclasses.replace(self.spec, control_rate_hz=0.0, safe_modes=("off",),
                                        sensors=self.spec.sensors + (self.spec.sensors[0],))


# -- a hardware-like driver: wall clock, no advance(), no read-back of its targets -------------

class WallClockArm(Driver):
    """Two joints following their targets (first order, 20 ms) in wall-clock time, like a servo arm.

    It exposes neither `applied_target()` nor an ignored-commands counter, so the kit judges
    limits and safe modes by the measured motion.
    """

    TAU = 0.02
    OBEYS_SAFE_MODES = True

    def __init__(self, control_hz: float = 50.0) -> None:
        n = 2
        self.spec = DriverSpec(
            name="wall_arm", control_rate_hz=control_hz,
            sensors=(SensorSpec("joint_position", (n,), "float32", "rad", -1.0, 1.0),
                     SensorSpec("joint_velocity", (n,), "float32", "rad/s")),
            actuator=ActuatorSpec(("a", "b"), "rad", (-1.0, -1.0), (1.0, 1.0), (10.0, 10.0), (2.0, 2.0)))
        self._mode = "closed"
        self._q = np.zeros(n)
        self._qd = np.zeros(n)
        self._target = np.zeros(n)
        self._hold = np.zeros(n)
        self._t = time.monotonic()

    def now(self) -> float:
        return time.monotonic()

    def _update(self) -> None:
        t = self.now()
        dt, self._t = t - self._t, t
        if self._mode == "closed" or (self._mode == "damping" and self.OBEYS_SAFE_MODES):
            self._qd[:] = 0.0
            return
        target = self._hold if self._mode == "hold" and self.OBEYS_SAFE_MODES else self._target
        q = target + (self._q - target) * math.exp(-dt / self.TAU)
        self._qd = (q - self._q) / max(dt, 1e-9)
        self._q = np.clip(q, -1.0, 1.0)

    def open(self) -> None:
        self._update()
        if self._mode == "closed":
            self._target = self._q.copy()
            self._mode = "active"

    def close(self) -> None:
        self._update()
        self._mode = "closed"

    def read(self) -> SensorSample:
        if self._mode == "closed":
            raise DriverError("wall_arm: closed")
        self._update()
        return SensorSample(self.now(), {"joint_position": self._q.astype(np.float32),
                                         "joint_velocity": self._qd.astype(np.float32)})

    def write(self, command: Command) -> None:
        position = np.asarray(command.position, np.float64)
        if position.shape != (2,):
            raise DriverError(f"wall_arm: shape {position.shape}")
        self._update()
        if self._mode != "active" and self.OBEYS_SAFE_MODES:
            return
        self._target = np.clip(position, -1.0, 1.0)

    def safe_mode(self, mode, reason: str = "") -> None:
        self._update()
        self._hold = self._q.copy()
        self._mode = mode

    def resume(self) -> None:
        self._update()
        if self._mode in ("damping", "hold"):
            self._target = self._q.copy()
            self._mode = "active"

    def health(self) -> Health:
        return Health(ok=self._mode != "closed", mode=self._mode)


class FollowsInSafeModeArm(WallClockArm):
    OBEYS_SAFE_MODES = False


class SlowArm(WallClockArm):
    def read(self) -> SensorSample:
        time.sleep(1.5 / self.spec.control_rate_hz)
        return super().read()


FAST = CheckOptions(settle_s=0.15, reads=3, rate_cycles=10)


# -- the battery ------------------------------------------------------------------------------

def test_the_mujoco_a1_passes_every_check():
    report = run_checks(A1, target="mujoco_a1")
    assert report.ok, report.format()
    assert [r.name for r in report.results] == list(CHECKS)
    text = report.format()
    assert text.splitlines()[0] == "driver conformance: mujoco_a1"
    assert "  PASS  command_limits  above high: clamped" in text
    assert text.endswith(f"OK: all {len(CHECKS)} checks passed")
    # the A1 counts ignored commands in health(): that is what the safe-mode check goes by
    assert "ignored-commands count" in report.result("safe_modes").detail


def test_a_hardware_like_driver_passes_on_the_wall_clock():
    report = run_checks(WallClockArm, FAST)
    assert report.ok, report.format()
    assert "hardware (wall clock)" in report.result("spec").detail
    assert "judged by joint motion" in report.result("safe_modes").detail
    assert "joints within the limits" in report.result("command_limits").detail


def test_the_dynamixel_arm_passes_on_the_emulated_bus():
    from daydream.drivers.dynamixel import arm, emulator

    with emulator.EmulatedBus(ids=[1, 2, 3]) as bus:
        factory = functools.partial(arm.DynamixelArm, ids=[1, 2, 3], port=bus.port, position_limits=[-1.5, 1.5])
        report = run_checks(factory, target="dynamixel_arm on EmulatedBus")
        assert report.ok, report.format()
        assert "hardware (wall clock)" in report.result("spec").detail


@pytest.mark.parametrize("driver, check, expected", [
    (WrongShapeA1, "read", "sensor 'joint_position' has shape (11,), declared (12,)"),
    (FrozenStampA1, "stamps", "stamp did not increase"),
    (NoSafeModeA1, "safe_modes", "after safe_mode('damping'), health().mode is 'active', expected 'damping'"),
    (NoSafeModeA1, "watchdog", "the driver's health().mode is 'active', not 'damping'"),
    (UnclampedA1, "command_limits", "a command above high was accepted and after 0.5 s joint"),
    (ObeysInSafeModeA1, "safe_modes", "raised the ignored-commands count in health().details by 0"),
    (BadSpecA1, "spec", "control_rate_hz must be a positive number"),
    (FollowsInSafeModeArm, "safe_modes", "in safe mode 'damping' the joints moved toward a written command"),
    (SlowArm, "rate", "longer than the 20.00 ms control period at 50 Hz"),
])
def test_a_broken_driver_fails_the_check_naming_its_fault(driver, check, expected):
    options = FAST if issubclass(driver, WallClockArm) else None
    result = run_check(check, driver, options)
    assert not result.passed and expected in result.detail, result.detail


def test_the_report_of_a_broken_driver_says_what_failed():
    report = run_checks(WrongShapeA1, target="WrongShapeA1")
    assert not report.ok
    read = report.result("read")
    assert not read.passed and read.detail.startswith("read() after open(): sensor 'joint_position' has shape (11,)")
    text = report.format()
    assert "  FAIL  read " in text and "  PASS  spec " in text
    assert text.splitlines()[-1].startswith(f"FAILED: {len(report.failed)} of {len(CHECKS)} checks (")
    bad_spec = run_check("spec", BadSpecA1)
    assert "declared twice" in bad_spec.detail and "safe_modes ['off']" in bad_spec.detail


def test_a_check_survives_a_factory_that_raises_and_a_driver_that_raises():
    def factory():
        raise RuntimeError("no device on /dev/ttyUSB0")

    result = run_check("read", factory)
    assert not result.passed and "factory raised RuntimeError: no device on /dev/ttyUSB0" in result.detail

    class Exploding(WallClockArm):
        def health(self):
            raise OSError("bus error")

    result = run_check("health", Exploding)
    assert not result.passed and result.detail == "raised OSError: bus error"
    with pytest.raises(ValueError, match="unknown check"):
        run_checks(A1, checks=["nope"])


def test_report_format():
    report = Report("x", (CheckResult("spec", True, "fine"), CheckResult("watchdog", False, "did not trip")))
    assert report.format().splitlines() == ["driver conformance: x", "  PASS  spec      fine",
                                            "  FAIL  watchdog  did not trip", "FAILED: 1 of 2 checks (watchdog)"]


# -- the pytest entry point ---------------------------------------------------------------------

def test_conformance_tests_is_a_parametrized_pytest_test():
    test = conformance_tests(A1, checks=["spec", "read"])
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    assert mark.args == ("check", ["spec", "read"])
    test("spec")
    test("read")
    broken = conformance_tests(WrongShapeA1)
    with pytest.raises(pytest.fail.Exception, match="check 'read' failed: read\\(\\) after open\\(\\): sensor"):
        broken("read")
    assert list(conformance_tests(A1).pytestmark[0].args[1]) == list(CHECKS)


# -- the CLI ------------------------------------------------------------------------------------

def test_cli_driver_check_passes_the_a1(capsys):
    assert main(["driver", "check", "mujoco_a1", "--arg", "start=standing"]) == 0
    out = capsys.readouterr().out
    assert ("driver conformance: mujoco_a1 (daydream.drivers.mujoco_a1:MuJoCoA1Driver), args {'start': 'standing'}"
            in out)
    assert "  PASS  watchdog" in out and f"OK: all {len(CHECKS)} checks passed" in out


def test_cli_driver_check_takes_the_config_args(capsys):
    assert main(["driver", "check", "mujoco_a1", "--config", "a1_walk", "--set", "seed=3", "--only", "spec"]) == 0
    out = capsys.readouterr().out
    assert "'start': 'lying_on_back'" in out and "'seed': 3" in out and "'control_hz': 20.0" in out
    assert "OK: all 1 checks passed" in out


def test_cli_driver_check_fails_a_broken_driver(capsys):
    code = main(["driver", "check", "test_conformance:UnclampedA1", "--only", "command_limits", "--only", "spec"])
    out = capsys.readouterr().out
    assert code == 1
    assert "  FAIL  command_limits  a command above high was accepted" in out and "  PASS  spec" in out
    assert "FAILED: 1 of 2 checks (command_limits)" in out


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown driver 'nope'"),
    (["no_such_pkg.driver:Robot"], "is the folder holding that package on PYTHONPATH?"),
    (["mujoco_a1", "--arg", "start"], "--arg 'start' must look like key=value"),
    (["mujoco_a1", "--arg", "wheels=4"], "does not take these arguments ['wheels']"),
    (["mujoco_a1", "--arg", "start=sideways"], "cannot construct driver mujoco_a1"),
    (["mujoco_a1", "--set", "seed=1"], "--set overrides keys of a config: it needs --config"),
    (["mujoco_a1", "--only", "everything"], "unknown check(s) ['everything']"),
])
def test_cli_driver_check_usage_errors_exit_2(capsys, argv, message):
    assert main(["driver", "check", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_driver_needs_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["driver"])
    assert exc.value.code == 2


# -- the scaffold -------------------------------------------------------------------------------

def test_new_robot_writes_clean_files_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["new-robot", "my_bot", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    expected = ["my_bot/__init__.py", "my_bot/driver.py", "my_bot/task.py", "configs/my_bot.yaml",
                "tests/test_my_bot.py"]
    for rel in expected:
        assert (tmp_path / rel).is_file() and f"wrote {tmp_path / rel}" in out
    assert "daydream driver check my_bot.driver:MyBotDriver --config configs/my_bot.yaml" in out
    assert sorted(scaffold_files("my_bot")) == sorted(expected)
    driver = (tmp_path / "my_bot/driver.py").read_text()
    assert "class MyBotDriver(SimulatedDriver):" in driver and "HARDWARE" in driver and "$" not in driver
    assert "task: my_bot.task:MyBotReach" in (tmp_path / "configs/my_bot.yaml").read_text()

    import pyflakes.api as pyflakes  # a test dependency: the scaffold must be lint-clean
    from pyflakes.reporter import Reporter

    class Collect:
        def __init__(self):
            self.lines = []

        def write(self, text):
            self.lines.append(text)

    messages = Collect()
    warnings = pyflakes.checkRecursive([str(tmp_path)], Reporter(messages, messages))
    assert warnings == 0, "".join(messages.lines)

    (tmp_path / "my_bot/task.py").write_text("# edited\n")
    assert main(["new-robot", "my_bot", "--dir", str(tmp_path)]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert (tmp_path / "my_bot/task.py").read_text() == "# edited\n"


@pytest.mark.parametrize("name", ["MyBot", "my-bot", "1bot", "_bot", "", "class", "os", "daydream", "tests"])
def test_new_robot_refuses_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="robot name"):
        check_name(name)
    with pytest.raises(ValueError, match="robot name"):
        new_robot(name, tmp_path)
    assert not any(tmp_path.iterdir())


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_scaffold_passes_driver_check_and_its_own_tests(tmp_path):
    new_robot("scaffold_bot", tmp_path)
    check = _run(["-m", "daydream.cli", "driver", "check", "scaffold_bot.driver:ScaffoldBotDriver", "--config",
                  "configs/scaffold_bot.yaml"], tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"OK: all {len(CHECKS)} checks passed" in check.stdout
    tests = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_scaffold_bot.py"], tmp_path)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert f"{len(CHECKS) + 2} passed" in tests.stdout


def test_the_scaffold_config_makes_a_task_and_a_launch_plan(tmp_path, monkeypatch):
    from daydream.config import load_config
    from daydream.envs.robot_tasks import make_task
    from daydream.ros.launch_plan import make_plan

    new_robot("plan_bot", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    config_path = tmp_path / "configs/plan_bot.yaml"
    config = load_config(config_path)
    assert config.env.task == "plan_bot.task:PlanBotReach" and config.robot.driver == "plan_bot.driver:PlanBotDriver"
    task = make_task(config.env.task)
    assert task.name == "plan_bot_reach"
    plan = make_plan(config_path, learner="local")
    assert [p.name for p in plan.processes] == ["robot_driver", "learner", "robot_actor"]
    assert plan.config_path == config_path.resolve()


def test_make_task_names_a_task_by_module_and_class():
    from daydream.envs.robot_tasks import A1Walk, make_task

    assert isinstance(make_task("daydream.envs.robot_tasks:A1Walk"), A1Walk)
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg'"):
        make_task("no_such_pkg:Task")
    with pytest.raises(ValueError, match="'up_z' in daydream.envs.robot_tasks is not a"):
        make_task("daydream.envs.robot_tasks:up_z")
    with pytest.raises(ValueError, match="or 'package.module:ClassName'"):
        make_task("walk")
