"""Between the driver world (`SensorSample`, `Command`) and ROS 2 messages, without any middleware.

- `sample_messages`: one driver sample as the sensor topics' messages, all with the same
  header stamp, so a subscriber can put them back together exactly.
- `SampleAssembler`: the other side: keeps the newest few messages per sensor topic and
  assembles the newest *synchronised* `SensorSample` (every sensor's message from the
  same instant, within a tolerance). Bad messages (wrong lengths, names that do not
  match the driver's joints, NaN, timestamps that go backwards) are rejected with a
  `BadMessage` that says why; the node logs and drops them.
- `command_from_array` / `command_from_trajectory`: joint targets from the two command
  message types, checked the same way; `command_message` builds the first.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from daydream.drivers import DriverSpec, SensorSample
from daydream.ros import messages as m
from daydream.ros import topics

# sensor topic -> the SensorSample keys its message carries
TOPIC_KEYS = {
    topics.JOINT_STATES.name: ("joint_position", "joint_velocity", "joint_torque"),
    topics.IMU.name: ("imu_orientation", "imu_angular_velocity", "imu_linear_acceleration"),
    topics.FOOT_CONTACTS.name: ("foot_contact",),
    topics.BASE_VELOCITY.name: ("base_velocity",),
    topics.IMAGE.name: ("image",),
}


class BadMessage(ValueError):
    """A message that cannot be used; the message says what is wrong with it."""


def header(stamp: float, frame_id: str = "") -> Any:
    return m.Header(stamp=m.stamp_to_time(stamp), frame_id=frame_id)


def sensor_topics(spec: DriverSpec, camera: bool = False) -> tuple[str, ...]:
    """The sensor topics a driver with `spec` publishes (those whose keys it declares)."""
    have = {s.name for s in spec.sensors}
    names = [t for t, keys in TOPIC_KEYS.items() if keys[0] in have and (t != topics.IMAGE.name or camera)]
    return tuple(names)


def sample_messages(sample: SensorSample, spec: DriverSpec, stamp: float, camera: bool = False,
                    frame_id: str = "base") -> dict[str, Any]:
    """The sensor topics' messages for one sample, stamped `stamp` (ROS time, seconds)."""
    v = sample.values
    out: dict[str, Any] = {}
    names = list(spec.actuator.joint_names)
    if "joint_position" in v:
        out[topics.JOINT_STATES.name] = m.JointState(
            header=header(stamp, frame_id), name=names, position=_floats(v["joint_position"]),
            velocity=_floats(v.get("joint_velocity", ())), effort=_floats(v.get("joint_torque", ())))
    if "imu_orientation" in v:
        w, x, y, z = _floats(v["imu_orientation"])
        out[topics.IMU.name] = m.Imu(
            header=header(stamp, "imu"), orientation=m.Quaternion(x=x, y=y, z=z, w=w),
            angular_velocity=_vector3(v.get("imu_angular_velocity", (0.0, 0.0, 0.0))),
            linear_acceleration=_vector3(v.get("imu_linear_acceleration", (0.0, 0.0, 0.0))))
    if "foot_contact" in v:
        contacts = np.asarray(v["foot_contact"], np.float64).reshape(-1)
        layout = m.MultiArrayLayout(dim=[m.MultiArrayDimension(label="feet", size=contacts.size, stride=contacts.size)],
                                    data_offset=0)
        out[topics.FOOT_CONTACTS.name] = m.Float64MultiArray(layout=layout, data=_floats(contacts))
    if "base_velocity" in v:
        out[topics.BASE_VELOCITY.name] = m.TwistStamped(
            header=header(stamp, frame_id), twist=m.Twist(linear=_vector3(v["base_velocity"]),
                                                         angular=_vector3(v.get("imu_angular_velocity", (0, 0, 0)))))
    if camera and "image" in v:
        image = np.ascontiguousarray(v["image"], np.uint8)
        height, width = image.shape[:2]
        out[topics.IMAGE.name] = m.Image(header=header(stamp, "camera"), height=height, width=width, encoding="rgb8",
                                         is_bigendian=0, step=width * 3, data=image.tobytes())
    return out


def _floats(values: Any) -> list[float]:
    return [float(x) for x in np.asarray(values, np.float64).reshape(-1)]


def _vector3(values: Any) -> Any:
    x, y, z = _floats(values)
    return m.Vector3(x=x, y=y, z=z)


# -- the subscriber side ------------------------------------------------------------------

def message_values(topic: str, msg: Any, spec: DriverSpec) -> tuple[float, dict[str, np.ndarray]]:
    """(stamp, SensorSample values) carried by one sensor message; BadMessage if unusable."""
    n = spec.actuator.size
    if topic == topics.JOINT_STATES.name:
        names = list(msg.name)
        if len(msg.position) != len(names):
            raise BadMessage(f"JointState with {len(names)} names but {len(msg.position)} positions")
        for field in ("velocity", "effort"):
            length = len(getattr(msg, field))
            if length not in (0, len(names)):
                raise BadMessage(f"JointState with {len(names)} names but {length} {field} values")
        if names != list(spec.actuator.joint_names):
            if sorted(names) != sorted(spec.actuator.joint_names):
                raise BadMessage(f"JointState joints {names} are not the driver's {list(spec.actuator.joint_names)}")
            order = [names.index(j) for j in spec.actuator.joint_names]  # reorder by name
        else:
            order = list(range(n))
        values = {"joint_position": _array(msg.position, order, "position")}
        if len(msg.velocity):
            values["joint_velocity"] = _array(msg.velocity, order, "velocity")
        if len(msg.effort):
            values["joint_torque"] = _array(msg.effort, order, "effort")
        return m.time_to_seconds(msg.header.stamp), values
    if topic == topics.IMU.name:
        q, w, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
        values = {"imu_orientation": _checked([q.w, q.x, q.y, q.z], "orientation"),
                  "imu_angular_velocity": _checked([w.x, w.y, w.z], "angular_velocity"),
                  "imu_linear_acceleration": _checked([a.x, a.y, a.z], "linear_acceleration")}
        return m.time_to_seconds(msg.header.stamp), values
    if topic == topics.FOOT_CONTACTS.name:
        return math.nan, {"foot_contact": _checked(msg.data, "foot contacts") > 0.5}
    if topic == topics.BASE_VELOCITY.name:
        v = msg.twist.linear
        return m.time_to_seconds(msg.header.stamp), {"base_velocity": _checked([v.x, v.y, v.z], "base velocity")}
    if topic == topics.IMAGE.name:
        if msg.encoding != "rgb8" or msg.step != msg.width * 3 or len(msg.data) != msg.height * msg.step:
            raise BadMessage(f"Image {msg.width}x{msg.height} '{msg.encoding}' step {msg.step} with {len(msg.data)} "
                             "bytes is not packed rgb8")
        image = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        return m.time_to_seconds(msg.header.stamp), {"image": image}
    raise BadMessage(f"no sensor topic named {topic!r}; known: {sorted(TOPIC_KEYS)}")


def _array(values: Any, order: list[int], what: str) -> np.ndarray:
    return _checked(values, what)[order]


def _checked(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(list(values), np.float32)
    if not np.all(np.isfinite(arr)):
        raise BadMessage(f"non-finite {what} values {arr.tolist()}")
    return arr


UNSTAMPED_TOPICS = (topics.FOOT_CONTACTS.name,)  # standard array messages carry no header


class SampleAssembler:
    """The newest synchronised sample from per-topic message streams.

    Messages of one driver sample share a header stamp; the assembler keeps the last
    `history` messages per stamped topic and returns the newest instant for which every
    stamped topic has a message within `tolerance_s`, with the values in the driver's
    sample layout (float32 arrays, bool contacts). Foot contacts come as a plain array
    message without a header, so the newest one is used as it is (at the driver's
    publish rate it is at most one period apart).
    """

    def __init__(self, spec: DriverSpec, topic_names: tuple[str, ...], tolerance_s: float = 0.005,
                 history: int = 8) -> None:
        unknown = [t for t in topic_names if t not in TOPIC_KEYS]
        if unknown:
            raise ValueError(f"unknown sensor topics {unknown}; known: {sorted(TOPIC_KEYS)}")
        self.spec, self.topics, self.tolerance_s = spec, tuple(topic_names), tolerance_s
        self.stamped = tuple(t for t in self.topics if t not in UNSTAMPED_TOPICS)
        if not self.stamped:
            raise ValueError(f"sensor topics {list(topic_names)} include none with a header to synchronise on")
        self._messages: dict[str, deque[tuple[float, dict[str, np.ndarray]]]] = {
            t: deque(maxlen=history) for t in self.stamped}
        self._latest: dict[str, dict[str, np.ndarray]] = {}  # unstamped topics
        self.dropped: dict[str, int] = {}

    def add(self, topic: str, msg: Any) -> None:
        """Take one message; raises BadMessage (and keeps nothing) if it is unusable."""
        if topic not in self.topics:
            raise BadMessage(f"topic {topic!r} is not one this assembler listens to ({list(self.topics)})")
        try:
            stamp, values = message_values(topic, msg, self.spec)
            if topic in UNSTAMPED_TOPICS:
                self._latest[topic] = values
                return
            queue = self._messages[topic]
            if queue and stamp < queue[-1][0]:
                raise BadMessage(f"{topic} stamp {stamp:.6f} is older than the previous {queue[-1][0]:.6f} "
                                 "(out of order)")
        except BadMessage:
            self.dropped[topic] = self.dropped.get(topic, 0) + 1
            raise
        queue.append((stamp, values))

    def sample(self) -> SensorSample | None:
        """The newest synchronised sample, or None until every topic has delivered."""
        if not all(self._messages.values()) or len(self._latest) < len(self.topics) - len(self.stamped):
            return None
        for stamp, _ in reversed(self._messages[self.stamped[0]]):
            picked = [self._closest(t, stamp) for t in self.stamped]
            if all(p is not None for p in picked):
                values: dict[str, np.ndarray] = {}
                for p in (*picked, *self._latest.values()):
                    values.update(p)
                return SensorSample(stamp=stamp, values=values)
        return None

    def _closest(self, topic: str, stamp: float) -> dict[str, np.ndarray] | None:
        best = min(self._messages[topic], key=lambda item: abs(item[0] - stamp))
        return best[1] if abs(best[0] - stamp) <= self.tolerance_s else None


# -- commands ------------------------------------------------------------------------------

def command_message(position: np.ndarray) -> Any:
    """Joint targets as a Float64MultiArray (in the driver's joint order: the message has no names)."""
    position = np.asarray(position, np.float64).reshape(-1)
    layout = m.MultiArrayLayout(dim=[m.MultiArrayDimension(label="joints", size=position.size, stride=position.size)],
                                data_offset=0)
    return m.Float64MultiArray(layout=layout, data=_floats(position))


def trajectory_message(position: np.ndarray, joint_names: tuple[str, ...], stamp: float) -> Any:
    """A one-point JointTrajectory (reach `position` now) stamped with the observation it answers."""
    point = m.JointTrajectoryPoint(positions=_floats(position))
    return m.JointTrajectory(header=header(stamp), joint_names=list(joint_names), points=[point])


def command_from_array(msg: Any, spec: DriverSpec) -> np.ndarray:
    """Joint targets from a Float64MultiArray in the driver's joint order."""
    data = np.asarray(list(msg.data), np.float64)
    if data.shape != (spec.actuator.size,):
        raise BadMessage(f"joint command with {data.size} values; driver {spec.name} has {spec.actuator.size} joints "
                         f"{list(spec.actuator.joint_names)}")
    if not np.all(np.isfinite(data)):
        raise BadMessage(f"joint command with non-finite values {data.tolist()}")
    return data


def command_from_trajectory(msg: Any, spec: DriverSpec) -> np.ndarray:
    """Joint targets from a JointTrajectory's first point, joints matched by name (all must be named)."""
    names = list(msg.joint_names)
    if not msg.points:
        raise BadMessage("JointTrajectory without points")
    positions = list(msg.points[0].positions)
    if len(positions) != len(names):
        raise BadMessage(f"JointTrajectory with {len(names)} joint names but {len(positions)} positions")
    missing = [j for j in spec.actuator.joint_names if j not in names]
    if missing:
        raise BadMessage(f"JointTrajectory does not name joints {missing} of driver {spec.name}")
    data = np.array([positions[names.index(j)] for j in spec.actuator.joint_names], np.float64)
    if not np.all(np.isfinite(data)):
        raise BadMessage(f"JointTrajectory with non-finite positions {data.tolist()}")
    return data
