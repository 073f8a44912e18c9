"""The `robot_driver` node: owns a driver (hardware or the MuJoCo A1) behind the safety layer.

`DriverNodeCore` is the node without a middleware (tested as it is): every `tick()` it
advances a simulated driver by one publish period (the node paces it by the wall
clock, so the sim runs in real time like a robot), runs the safety layer's watchdog,
reads the sensors and returns their messages, all stamped with one ROS time; commands
(`Float64MultiArray` or `JointTrajectory`) and the e-stop (`Bool`) come in through
`on_*` methods, bad ones are logged and dropped. `DriverNode` binds it to a `port.Node`:
sensor topics at `ros.publish_hz`, the latched `safety_mode` topic, and a status file.

Run: `python -m daydream.ros.driver_node --config a1_walk [--set key=value ...]`
(what `ros2 launch daydream a1_walk.launch.py` and `daydream launch` start).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np

from daydream.config import Config
from daydream.drivers import Command, SimulatedDriver
from daydream.drivers.safety import SafetyLayer
from daydream.ros import messages as m
from daydream.ros import topics
from daydream.ros.conversions import (BadMessage, command_from_array, command_from_trajectory, sample_messages,
                                      sensor_topics)
from daydream.ros.port import DEFAULT_QOS, LATCHED_QOS, SENSOR_QOS, Node

log = logging.getLogger(__name__)


class DriverNodeCore:
    def __init__(self, driver: SafetyLayer, publish_hz: float, camera: bool = False) -> None:
        if publish_hz <= 0:
            raise ValueError(f"ros.publish_hz must be positive, got {publish_hz}")
        self.driver, self.period, self.camera = driver, 1.0 / publish_hz, camera
        self.simulated = isinstance(driver, SimulatedDriver)
        self.topics = sensor_topics(driver.spec, camera)
        self.counters = {"ticks": 0, "commands": 0, "bad_commands": 0, "estops": 0, "estop_clears": 0,
                         "estop_clear_refused": 0}
        self.last_command: list[float] | None = None
        # sensor-to-command latency (s) of stamped trajectory commands: their header is the answered observation's
        self.latencies: deque[float] = deque(maxlen=2000)

    def open(self) -> None:
        self.driver.open()

    def close(self) -> None:
        self.driver.close()

    def tick(self, ros_now: float) -> dict[str, Any]:
        """One publish period: advance a sim, check the watchdog, read; the sensor messages by topic."""
        if self.simulated:
            self.driver.advance(self.period)  # type: ignore[attr-defined]
        self.driver.tick()
        sample = self.driver.read()
        self.counters["ticks"] += 1
        # the sample's age on the driver's clock, carried over to ROS time
        stamp = ros_now - (self.driver.now() - sample.stamp)
        return sample_messages(sample, self.driver.spec, stamp, camera=self.camera)

    def on_command(self, msg: Any) -> None:
        self._command(command_from_array, msg)

    def on_trajectory(self, msg: Any, ros_now: float | None = None) -> None:
        stamp = m.time_to_seconds(msg.header.stamp)
        if stamp > 0 and ros_now is not None:
            self.latencies.append(ros_now - stamp)
        self._command(command_from_trajectory, msg)

    def _command(self, parse: Any, msg: Any) -> None:
        try:
            position = parse(msg, self.driver.spec)
        except BadMessage as exc:
            self.counters["bad_commands"] += 1
            log.warning("dropped a joint command: %s", exc)
            return
        self.counters["commands"] += 1
        self.driver.write(Command(position, stamp=self.driver.now()))
        self.last_command = [float(x) for x in position]

    def on_estop(self, msg: Any) -> None:
        """`true` latches the e-stop. `false` does nothing: a stray message must never re-arm a robot."""
        if bool(msg.data):
            self.counters["estops"] += 1
            self.driver.estop("e-stop topic")
        elif self.driver.estopped:
            self.counters["estop_clear_refused"] += 1
            log.warning("ignored false on the e-stop topic: the e-stop stays latched; clear it explicitly "
                        "(the robot_driver's ~/clear_estop service, std_srvs/srv/Trigger)")

    def clear_estop(self, by: str = "the ~/clear_estop service") -> tuple[bool, str]:
        """Clear a latched e-stop (an explicit, logged act); (success, message) as std_srvs/Trigger answers."""
        if not self.driver.estopped:
            return True, "the e-stop was not latched"
        self.driver.clear_estop(by=by)
        self.counters["estop_clears"] += 1
        return True, "e-stop cleared: the next command resumes from the measured position"

    def mode(self) -> str:
        return self.driver.health().mode

    def status(self) -> dict[str, Any]:
        health = self.driver.health()
        latency = {}
        if self.latencies:
            ms = np.sort(np.asarray(self.latencies)) * 1000
            latency = {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)),
                       "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms[-1])}
        return {"role": "robot_driver", "mode": health.mode, "message": health.message, **self.counters,
                "last_command": self.last_command, "safety": dict(self.driver.counters), "latency": latency,
                "driver": {k: v for k, v in health.details.items() if _plain(v)}}


def _plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


class DriverNode:
    """`DriverNodeCore` on a middleware node."""

    def __init__(self, node: Node, core: DriverNodeCore, status_path: Any = None, status_every_s: float = 0.5) -> None:
        from daydream.runtime.status import StatusFile

        self.node, self.core = node, core
        self.publishers = {name: node.create_publisher(m.message_type(topics.TYPE_OF[name]), name, SENSOR_QOS)
                           for name in core.topics}
        self.mode_publisher = node.create_publisher(m.String, topics.SAFETY_MODE.name, LATCHED_QOS)
        node.create_subscription(m.Float64MultiArray, topics.JOINT_COMMANDS.name, core.on_command, DEFAULT_QOS)
        node.create_subscription(m.JointTrajectory, topics.JOINT_TRAJECTORY.name,
                                 lambda msg: core.on_trajectory(msg, node.now()), DEFAULT_QOS)
        node.create_subscription(m.Bool, topics.ESTOP.name, core.on_estop, DEFAULT_QOS)
        if not node.create_trigger_service(topics.CLEAR_ESTOP, core.clear_estop):
            log.info("this middleware backend serves no ROS 2 services: a latched e-stop is cleared by restarting the "
                     "robot_driver (or run it on the rclpy backend and call %s)", topics.CLEAR_ESTOP)
        self.status = StatusFile(status_path, status_every_s) if status_path else None
        self._mode = ""
        self.timer = node.create_timer(core.period, self._on_timer)

    def close(self) -> None:
        """Stop publishing and close the driver (its actuators go to their safe mode)."""
        self.timer.cancel()
        self.core.close()
        if self.status is not None:
            self.status.write(self.core.status())

    def _on_timer(self) -> None:
        for name, msg in self.core.tick(self.node.now()).items():
            self.publishers[name].publish(msg)
        mode = self.core.mode()
        if mode != self._mode:
            self._mode = mode
            health = self.core.driver.health()
            self.mode_publisher.publish(m.String(data=f"{mode}: {health.message}" if health.message else mode))
        if self.status is not None and self.status.due():
            self.status.write(self.core.status())



def build(config: Config, node: Node) -> DriverNode:
    """The robot_driver of `config` (its driver behind the safety layer) on `node`."""
    from pathlib import Path

    from daydream.drivers.registry import make_safe_driver

    driver = make_safe_driver(config.robot, seed=config.seed)
    core = DriverNodeCore(driver, config.ros.publish_hz, camera=config.robot.camera)
    core.open()
    status = Path(config.logdir) / "ros" / "robot_driver" / "status.json"
    return DriverNode(node, core, status, config.ros.status_every_s)


def main(argv: list[str] | None = None) -> int:
    from daydream.ros.node_main import run_node

    return run_node("robot_driver", build, argv)


if __name__ == "__main__":
    raise SystemExit(main())

