"""A fault in the robot env puts the actuators in a safe mode the driver has.

The env used to ask every driver for "damping"; a driver whose only safe mode is "hold"
refused, the error was swallowed, and its actuators stayed active on a fault.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from daydream.drivers import DriverError
from daydream.drivers.mujoco_a1 import MuJoCoA1Driver
from daydream.drivers.safety import SafetyConfig, SafetyLayer
from daydream.envs.robot import RobotEnv, fault_safe_mode
from daydream.envs.robot_tasks import make_task


class HoldOnlyA1(MuJoCoA1Driver):
    """The simulated A1 as a robot whose actuators can only hold their position (no damping)."""

    _closing = False

    def _make_spec(self):
        return dataclasses.replace(super()._make_spec(), safe_modes=("hold",))

    def safe_mode(self, mode, reason=""):
        if mode != "hold" and not self._closing:  # the simulator's own close() still damps; fine for a test double
            raise DriverError(f"hold-only driver: no safe mode {mode!r}")
        super().safe_mode(mode, reason)

    def close(self) -> None:
        self._closing = True
        super().close()


def stale(driver):
    real_read = driver.read
    driver.read = lambda: dataclasses.replace(real_read(), stamp=real_read().stamp - 1.0)


@pytest.mark.parametrize("wrapped", [True, False])
def test_a_fault_puts_a_hold_only_robot_in_hold(wrapped):
    raw = HoldOnlyA1(control_hz=20, start="standing")
    driver = SafetyLayer(raw, SafetyConfig(safe_mode="hold")) if wrapped else raw
    env = RobotEnv(driver, make_task("a1_walk"), control_hz=20)
    assert env.safe_mode == "hold"
    env.reset()
    env.step(np.zeros(12, np.float32))
    stale(driver)
    with pytest.raises(DriverError, match="old"):
        env.step(np.zeros(12, np.float32))
    assert raw.health().mode == "hold", "the fault left the actuators active"
    env.close()


def test_the_configured_safe_mode_is_used_and_must_be_the_drivers():
    a1 = MuJoCoA1Driver(control_hz=20)
    assert fault_safe_mode(a1) == "damping"  # the driver's first declared mode
    assert fault_safe_mode(a1, "hold") == "hold"
    assert fault_safe_mode(SafetyLayer(a1, SafetyConfig(safe_mode="hold"))) == "hold"
    with pytest.raises(ValueError, match="only offers"):
        fault_safe_mode(HoldOnlyA1(control_hz=20), "damping")


def test_the_env_factory_passes_robot_safety_safe_mode():
    from daydream.config import load_config
    from daydream.envs import make_env

    c = load_config(None, ["env.backend=robot", "env.task=a1_walk", "env.time_limit=20", "robot.safety.safe_mode=hold"])
    env = make_env(c.env, seed=0, robot=c.robot)
    while not hasattr(env, "safe_mode"):
        env = env.env
    assert env.safe_mode == "hold"
    env.close()
