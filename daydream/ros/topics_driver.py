"""`TopicsDriver`: a robot seen through its ROS 2 topics, as a `Driver` (the env bridge).

The robot actor runs the same `RobotEnv` as everywhere else; only its driver differs:
`read()` is the newest time-synchronised sample assembled from the sensor topics
(`SampleAssembler`), `write()` publishes a joint command, `now()` is the node's ROS
clock, against which `RobotEnv` judges staleness. When the robot_driver node dies, the
samples stop getting newer, the env reports stale sensors and puts this driver in its
safe mode: it stops commanding, and the robot's own watchdog (in the robot_driver node)
takes the actuators to their safe mode. `resume()` (after sensors are fresh again)
lets commands through once more.

The subscription callbacks run on the node's spinning thread while the env steps on
another, hence the lock.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from daydream.drivers import Command, Driver, DriverError, DriverSpec, Health, SensorSample
from daydream.ros import messages as m
from daydream.ros import topics
from daydream.ros.conversions import BadMessage, SampleAssembler, command_message, trajectory_message
from daydream.ros.port import DEFAULT_QOS, SENSOR_QOS, Node

log = logging.getLogger(__name__)


class TopicsDriver(Driver):
    def __init__(self, node: Node, spec: DriverSpec, sensor_topics: tuple[str, ...], tolerance_s: float = 0.005,
                 command_type: str = "array") -> None:
        if command_type not in ("array", "trajectory"):
            raise ValueError(f"ros.command_type must be array or trajectory, got {command_type!r}")
        self.node, self.spec, self.command_type = node, spec, command_type
        self._lock = threading.Lock()
        self._assembler = SampleAssembler(spec, sensor_topics, tolerance_s)
        self._last_stamp = 0.0  # stamp of the newest sample read: what the next command is computed from
        topic = topics.JOINT_COMMANDS if command_type == "array" else topics.JOINT_TRAJECTORY
        self._publisher = node.create_publisher(m.message_type(topic.type), topic.name, DEFAULT_QOS)
        for name in sensor_topics:
            node.create_subscription(m.message_type(topics.TYPE_OF[name]), name, self._callback(name), SENSOR_QOS)
        self._mode = "closed"
        self._reason = ""
        self.counters = {"commands_sent": 0, "commands_withheld": 0, "bad_messages": 0, "messages": 0}

    def _callback(self, topic: str):
        def on_message(msg: Any) -> None:
            with self._lock:
                try:
                    self._assembler.add(topic, msg)
                    self.counters["messages"] += 1
                except BadMessage as exc:
                    self.counters["bad_messages"] += 1
                    log.warning("dropped a %s message: %s", topic, exc)
        return on_message

    # -- Driver ----------------------------------------------------------------------------

    def open(self) -> None:
        self._mode = "active"

    def close(self) -> None:
        self._mode = "closed"

    def now(self) -> float:
        return self.node.now()

    def read(self) -> SensorSample:
        with self._lock:
            sample = self._assembler.sample()
        if sample is None:
            raise DriverError(f"no synchronised sample yet on the sensor topics {list(self._assembler.topics)} under "
                              f"{self.node.namespace}: is the robot_driver node running (same ROS_DOMAIN_ID and "
                              "namespace)?")
        self._last_stamp = sample.stamp
        return sample

    def wait_for_sample(self, timeout_s: float, fresh_within_s: float) -> SensorSample:
        """Block until a sample no older than `fresh_within_s` arrives; DriverError after `timeout_s`."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                sample = self._assembler.sample()
            if sample is not None and self.now() - sample.stamp <= fresh_within_s:
                return sample
            if time.monotonic() >= deadline:
                age = "none yet" if sample is None else f"the newest is {self.now() - sample.stamp:.2f} s old"
                raise DriverError(f"no fresh sensor data within {timeout_s:.1f} s ({age}) on "
                                  f"{list(self._assembler.topics)} under {self.node.namespace}")
            time.sleep(0.005)

    def write(self, command: Command) -> None:
        if self._mode != "active":
            self.counters["commands_withheld"] += 1
            return
        position = np.asarray(command.position)
        if self.command_type == "array":
            self._publisher.publish(command_message(position))
        else:  # the header carries the stamp of the observation it was computed from: the driver measures latency
            self._publisher.publish(trajectory_message(position, self.spec.actuator.joint_names, self._last_stamp))
        self.counters["commands_sent"] += 1

    def safe_mode(self, mode: str, reason: str = "") -> None:
        """Stop commanding; the robot's watchdog then takes the actuators to its safe mode."""
        if self._mode != mode:
            log.error("robot actor stops commanding (%s): %s", mode, reason)
        self._mode, self._reason = mode, reason

    def resume(self) -> None:
        if self._mode != "active":
            log.warning("robot actor resumes commanding")
        self._mode, self._reason = "active", ""

    def health(self) -> Health:
        with self._lock:
            dropped = dict(self._assembler.dropped)
        return Health(ok=self._mode == "active", mode=self._mode, message=self._reason,  # type: ignore[arg-type]
                      details={**self.counters, "dropped": dropped})
