"""Tasks for the robot env: the reward, the pose actions are centred on, and what counts as a fall.

A task reads a driver's `SensorSample` only (what a real robot measures, plus
`base_velocity`, which hardware gets from a state estimator), so the same task runs on
the MuJoCo A1 and on the robot. Configs name a task by its key in `TASKS` or, for a user's
robot, as `package.module:Class` (`env.task: myarm.task:MyarmReach`).
"""

from __future__ import annotations

import abc

import numpy as np

from daydream.drivers import DriverSpec, SensorSample
from daydream.plugins import load_class

A1_LEGS = ("FR", "FL", "RR", "RL")
A1_JOINTS = tuple(f"{leg}_{part}" for leg in A1_LEGS for part in ("hip", "thigh", "calf"))


def up_z(quat_wxyz: np.ndarray) -> float:
    """World-z component of the body's up axis, from the orientation quaternion (1 upright, -1 upside down)."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    return 1.0 - 2.0 * (x * x + y * y)


class Task(abc.ABC):
    name: str
    required_sensors: tuple[str, ...] = ("joint_position",)

    def check(self, spec: DriverSpec) -> None:
        """Raise ValueError if the driver lacks what this task needs."""
        have = {s.name for s in spec.sensors}
        missing = [s for s in self.required_sensors if s not in have]
        if missing:
            raise ValueError(f"task {self.name} needs sensors {missing} that driver {spec.name} does not declare")

    @abc.abstractmethod
    def pose(self, spec: DriverSpec) -> np.ndarray:
        """Joint targets that action 0 maps to."""

    @abc.abstractmethod
    def reward(self, sample: SensorSample) -> tuple[float, dict[str, float]]:
        """The reward and its terms (for logging)."""

    def fallen(self, sample: SensorSample) -> bool:
        return False

    def diagnostics(self, sample: SensorSample) -> dict[str, float]:
        """Numbers worth logging per step besides the reward (averaged per episode by actors and evaluation)."""
        return {}


class A1Walk(Task):
    """DayDreamer's A1 task: roll over, stand up, walk forward; staged reward (see ../shared/reference/a1.md).

    r_upr = up.z / 2 + 0.5; r_hip, r_shoulder (thigh joints), r_knee (calf joints) =
    1 - mean normalised deviation from the standing pose, each paid only when the previous
    term exceeds 0.7; then 10 * (r_vel + 1) / 2 once r_knee exceeds 0.7, where r_vel =
    (forward fraction of the body velocity, >= 0) * clip(v_forward / 0.3 m/s, -1, 1).
    """

    name = "a1_walk"
    required_sensors = ("joint_position", "imu_orientation", "base_velocity")
    STAND = np.array([0.0, 0.9, -1.8] * 4)
    TARGET_SPEED = 0.3
    GATE = 0.7

    def __init__(self) -> None:
        self._max_dev: np.ndarray | None = None

    def check(self, spec: DriverSpec) -> None:
        super().check(spec)
        if tuple(spec.actuator.joint_names) != A1_JOINTS:
            raise ValueError(f"task a1_walk expects the A1's joints {A1_JOINTS}, driver {spec.name} has "
                             f"{spec.actuator.joint_names}")
        low, high = spec.actuator.low_array(), spec.actuator.high_array()
        # normalise by the largest deviation the joint range allows from the standing pose
        self._max_dev = np.maximum(self.STAND - low, high - self.STAND)

    def pose(self, spec: DriverSpec) -> np.ndarray:
        return self.STAND.copy()

    def reward(self, sample: SensorSample) -> tuple[float, dict[str, float]]:
        terms, _ = self._staged(sample)
        return float(sum(terms.values())), terms

    def _staged(self, sample: SensorSample) -> tuple[dict[str, float], int]:
        """The reward's terms and how many of its gates the robot passed (0 .. 4: the velocity term pays)."""
        assert self._max_dev is not None, "call check(spec) first"
        v = sample.values
        terms = {"upright": up_z(v["imu_orientation"]) / 2 + 0.5, "hip": 0.0, "shoulder": 0.0, "knee": 0.0,
                 "velocity": 0.0}
        deviation = np.abs(np.asarray(v["joint_position"], np.float64) - self.STAND) / self._max_dev
        previous, passed = terms["upright"], 0
        for name, index in (("hip", 0), ("shoulder", 1), ("knee", 2)):
            if previous <= self.GATE:
                break
            passed += 1
            terms[name] = float(1.0 - deviation[index::3].mean())
            previous = terms[name]
        if terms["knee"] > self.GATE:
            passed += 1
            vel = np.asarray(v["base_velocity"], np.float64)
            forward = max(0.0, vel[0] / (np.linalg.norm(vel) + 1e-8))
            r_vel = forward * float(np.clip(vel[0] / self.TARGET_SPEED, -1.0, 1.0))
            terms["velocity"] = 10.0 * (r_vel + 1.0) / 2.0
        return terms, passed

    def fallen(self, sample: SensorSample) -> bool:
        return up_z(sample.values["imu_orientation"]) < 0.0

    def diagnostics(self, sample: SensorSample) -> dict[str, float]:
        # forward velocity in the body frame (m/s): what "it walks" means, independent of the reward's stages;
        # stage: the reward's gates passed (1 upright enough, 2-3 hips and thighs near the standing pose,
        # 4 standing: the velocity term pays), the episode's mean says how far up the robot got
        return {"forward_velocity": float(sample.values["base_velocity"][0]),
                "upright": up_z(sample.values["imu_orientation"]),
                "stage": float(self._staged(sample)[1])}


class Stand(A1Walk):
    """Stand up and hold the pose: A1Walk without the velocity term (a shorter experiment)."""

    name = "a1_stand"

    def reward(self, sample: SensorSample) -> tuple[float, dict[str, float]]:
        total, terms = super().reward(sample)
        total -= terms.pop("velocity")
        return total, terms


class HoldPose(Task):
    """Any robot: move to the middle of every joint's range and hold it still. A first task for a new
    robot (an arm, a leg on a stand): it checks the whole loop before a real task is written.

    Reward in [0, 1] per step: 1 - mean normalised distance from the pose, minus a small
    penalty on joint speed (normalised by 10 rad/s).
    """

    name = "hold_pose"
    required_sensors = ("joint_position", "joint_velocity")

    def __init__(self) -> None:
        self._pose: np.ndarray | None = None
        self._half_range: np.ndarray | None = None

    def check(self, spec: DriverSpec) -> None:
        super().check(spec)
        low, high = spec.actuator.low_array(), spec.actuator.high_array()
        self._pose, self._half_range = (low + high) / 2, np.maximum((high - low) / 2, 1e-6)

    def pose(self, spec: DriverSpec) -> np.ndarray:
        low, high = spec.actuator.low_array(), spec.actuator.high_array()
        return (low + high) / 2

    def reward(self, sample: SensorSample) -> tuple[float, dict[str, float]]:
        assert self._pose is not None and self._half_range is not None, "call check(spec) first"
        position = np.asarray(sample.values["joint_position"], np.float64)
        speed = np.abs(np.asarray(sample.values["joint_velocity"], np.float64))
        terms = {"pose": float(1.0 - np.mean(np.abs(position - self._pose) / self._half_range)),
                 "speed": -0.1 * float(np.mean(np.minimum(speed / 10.0, 1.0)))}
        return float(sum(terms.values())), terms


TASKS: dict[str, type[Task]] = {"a1_walk": A1Walk, "a1_stand": Stand, "hold_pose": HoldPose}


def make_task(name: str) -> Task:
    """The task `name`: a key of TASKS, or `package.module:Class` naming a Task subclass (a user's robot's task)."""
    if name in TASKS:
        return TASKS[name]()
    if ":" not in name:
        raise ValueError(f"unknown robot task '{name}'; env.task must be one of {sorted(TASKS)} or "
                         f"'package.module:ClassName' for env.backend: robot")
    cls = load_class(name, Task, "robot task")
    return cls()
