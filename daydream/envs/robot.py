"""`RobotEnv`: a gymnasium env made of a driver (behind the safety layer) and a task.

Each `step(action)` maps the action in [-1, 1]^n to joint targets around the task's
pose (`pose + action * action_scale`), writes them through the safety layer (clamp,
rate limit, filter, watchdog), lets one control period pass (advancing a simulated
driver's clock as fast as possible, or sleeping to the next wall-clock tick on
hardware), reads the sensors and checks them (every declared sensor present, declared
shape, fresh), and returns the observation and the task's reward.

Observations: `joint_position`, `joint_velocity`, and where the driver declares them
`imu_orientation`, `imu_angular_velocity`, `foot_contact` (as 0/1 floats); `last_action`;
and `image` when the driver has a camera and `robot.camera` is on. On any sensor fault the
actuators go to the safe mode before the error is raised: `robot.safety.safe_mode` (or the
safety layer's), else the first the driver declares, never one the driver lacks.

Episodes end on the time limit (a wrapper) only: hardware has no resets, and `reset()`
continues from wherever the robot is. A simulated robot is reset on the first `reset()`,
with `robot.reset_on_fall` after an episode that ended in a fall (which ends the episode
early, as a truncation), and with `robot.reset_each_episode` at every `reset()` (each
episode practises from the start pose: a sim-only shortcut for short experiments).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gymnasium as gym
import numpy as np

from daydream.drivers import Command, Driver, DriverError, SensorSample, SimulatedDriver
from daydream.envs.robot_tasks import Task

log = logging.getLogger(__name__)

VECTOR_SENSORS = ("joint_position", "joint_velocity", "imu_orientation", "imu_angular_velocity", "foot_contact")
REQUIRED_SENSORS = ("joint_position", "joint_velocity")  # the rest are observed where the driver declares them


class RobotEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, driver: Driver, task: Task, control_hz: float, action_scale: float = 1.0,
                 pacing: str = "auto", stale_timeout_s: float = 0.25, reset_on_fall: bool = False,
                 camera: bool = False, safe_mode: str | None = None, reset_each_episode: bool = False) -> None:
        if control_hz <= 0:
            raise ValueError(f"robot.control_hz must be positive, got {control_hz}")
        if pacing not in ("auto", "wall", "sim"):
            raise ValueError(f"robot.pacing must be auto, wall or sim, got {pacing!r}")
        simulated = isinstance(driver, SimulatedDriver)
        if pacing == "sim" and not simulated:
            raise ValueError(f"robot.pacing: sim needs a simulated driver; {type(driver).__name__} is hardware")
        self.driver, self.task = driver, task
        spec = driver.spec
        task.check(spec)
        self.safe_mode = fault_safe_mode(driver, safe_mode)
        self.spec_ = spec
        self.dt = 1.0 / control_hz
        self.pacing = ("sim" if simulated else "wall") if pacing == "auto" else pacing
        self.action_scale = action_scale
        self.stale_timeout_s = stale_timeout_s
        self.reset_on_fall = reset_on_fall and simulated
        self.reset_each_episode = reset_each_episode and simulated
        self.pose = task.pose(spec).astype(np.float64)
        n = spec.actuator.size
        declared = {s.name for s in spec.sensors}
        missing = [name for name in REQUIRED_SENSORS if name not in declared]
        if missing:
            raise ValueError(f"driver {spec.name} declares no {missing} sensor(s); the robot env needs joint positions "
                             "and velocities")
        self.vector_sensors = tuple(name for name in VECTOR_SENSORS if name in declared)
        spaces = {}
        for name in self.vector_sensors:
            s = spec.sensor(name)
            # the sensor's own shape: ContractAdapter casts and flattens observations, once
            spaces[name] = gym.spaces.Box(-np.inf, np.inf, tuple(s.shape), np.float32)
        spaces["last_action"] = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        self.camera = camera
        if camera:
            s = spec.sensor("image")
            spaces["image"] = gym.spaces.Box(0, 255, tuple(s.shape), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        self._opened = False
        self._needs_reset = True
        self._fell = False
        self._last_action = np.zeros(n, np.float32)
        self._next_tick = 0.0
        self.last_terms: dict[str, float] = {}

    # -- gymnasium API -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if not self._opened:
            self.driver.open()
            self._opened = True
        if isinstance(self.driver, SimulatedDriver) and (
                self._needs_reset or self.reset_each_episode or (self.reset_on_fall and self._fell)):
            self.driver.reset(seed)
            self._needs_reset = False
        self._fell = False
        self._last_action[:] = 0
        self._next_tick = time.monotonic() + self.dt
        sample = self._read()
        return self._observation(sample), {}

    def step(self, action: np.ndarray):
        action = np.asarray(action, np.float32)
        if action.shape != self.action_space.shape or not np.all(np.isfinite(action)):
            self._fault(f"action of shape {action.shape} (finite: {bool(np.all(np.isfinite(action)))}) is not a "
                        f"finite array of shape {self.action_space.shape}", ValueError)
        action = np.clip(action, -1.0, 1.0)
        target = self.pose + action.astype(np.float64) * self.action_scale
        self.driver.write(Command(target, stamp=self.driver.now()))
        self._wait_one_period()
        sample = self._read()
        self._last_action = action
        reward, self.last_terms = self.task.reward(sample)
        fell = self.task.fallen(sample)
        truncated = bool(self.reset_on_fall and fell)
        self._fell = fell
        info = {"reward_terms": self.last_terms, "diagnostics": self.task.diagnostics(sample)}
        return self._observation(sample), reward, False, truncated, info

    def recover(self) -> bool:
        """After a sensor fault: True (and the driver resumed) once fresh sensor data arrives again.

        Callers retry until it returns True, then `reset()` to begin a new episode; the
        driver's safe mode (and, on a robot, its watchdog) keeps the actuators safe meanwhile.
        """
        try:
            sample = self.driver.read()
        except DriverError:
            return False
        if self.driver.now() - sample.stamp > self.stale_timeout_s:
            return False
        self.driver.resume()
        return True

    def render(self) -> np.ndarray | None:
        render = getattr(self.driver, "render", None)
        return render() if callable(render) else None

    def close(self) -> None:
        if self._opened:
            self.driver.close()
            self._opened = False

    # -- internals -----------------------------------------------------------------------

    def _wait_one_period(self) -> None:
        if self.pacing == "sim":
            self.driver.advance(self.dt)  # type: ignore[attr-defined]
            return
        delay = self._next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
            self._next_tick += self.dt
        else:  # overran the control period: start a fresh schedule instead of bursting to catch up
            if delay < -self.dt:
                log.warning("control step overran its %.0f ms period by %.0f ms", 1000 * self.dt, -1000 * delay)
            self._next_tick = time.monotonic() + self.dt

    def _read(self) -> SensorSample:
        try:
            sample = self.driver.read()
        except DriverError as exc:
            self._fault(f"reading the sensors failed: {exc}")
        age = self.driver.now() - sample.stamp
        if age > self.stale_timeout_s:
            self._fault(f"sensor data is {age:.3f} s old (robot.stale_timeout_s={self.stale_timeout_s}): the sensors "
                        "stopped publishing or the driver lost the device")
        for name in (*self.vector_sensors, *(("image",) if self.camera else ())):
            s = self.spec_.sensor(name)
            value = sample.values.get(name)
            if value is None:
                self._fault(f"sensor '{name}' is missing from the driver's sample (has {sorted(sample.values)})")
            if tuple(np.shape(value)) != tuple(s.shape):
                self._fault(f"sensor '{name}' has shape {tuple(np.shape(value))}, the driver declared {tuple(s.shape)}")
        return sample

    def _observation(self, sample: SensorSample) -> dict[str, np.ndarray]:
        # as the driver gives them: ContractAdapter makes them float32 vectors (uint8 images)
        obs = {name: sample.values[name] for name in self.vector_sensors}
        obs["last_action"] = self._last_action.copy()
        if self.camera:
            obs["image"] = sample.values["image"]
        return obs

    def _fault(self, message: str, error: type[Exception] = DriverError):
        """Put the actuators in the safe mode, then raise."""
        try:
            self.driver.safe_mode(self.safe_mode, message)  # type: ignore[arg-type]
        except Exception:  # the driver may be what failed; the original error matters more
            log.exception("could not switch %s to its safe mode", type(self.driver).__name__)
        raise error(message)


def fault_safe_mode(driver: Driver, requested: str | None = None) -> str:
    """The safe mode a fault puts the actuators in: `requested` (robot.safety.safe_mode), else the
    safety layer's configured one, else the first the driver declares. Never a mode the driver lacks:
    a hold-only driver asked for damping would refuse, and its actuators would not go safe."""
    from daydream.drivers.safety import SafetyLayer

    declared = tuple(driver.spec.safe_modes)
    if not declared:
        raise ValueError(f"driver {driver.spec.name} declares no safe mode (DriverSpec.safe_modes); the robot env "
                         "needs one to stop the actuators on a fault")
    configured = driver.config.safe_mode if isinstance(driver, SafetyLayer) else None
    mode = requested or configured or declared[0]
    if mode not in declared:
        raise ValueError(f"robot.safety.safe_mode is {mode!r} but driver {driver.spec.name} only offers "
                         f"{list(declared)}; set robot.safety.safe_mode to one of them")
    return mode
