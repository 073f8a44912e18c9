"""What a ROS 2 user expects of daydream's nodes, on the rclpy backend (the `ros` extra's wheels) and the DDS one:
names relative to the node's namespace (so `-r __ns:=...` moves the topics), remapping from the config,
`ROS_DOMAIN_ID` honoured by both backends, logs on `/rosout`, and one clean shutdown on SIGINT and SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from daydream.ros import messages as m
from daydream.ros.port import make_node, rclpy_available
from processes import REPO

needs_rclpy = pytest.mark.skipif(not rclpy_available(), reason="rclpy cannot be imported: install the ros extra "
                                 "(pip install -e '.[ros]', Python 3.11 wheels) or source a ROS 2 install")

FORWARD = {"joint_commands": "/forward_position_controller/commands", "joint_states": "/joint_states"}


@pytest.fixture
def domain(monkeypatch) -> int:
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    value = random.SystemRandom().randint(1, 200)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(value))
    return value


def test_dds_backend_remaps_and_reads_ros_domain_id(domain):
    with make_node("robot_actor", "dds", namespace="robot", remap=FORWARD) as node:
        assert node.domain_id == domain  # ros.domain_id null: the environment's
        assert node.resolve("joint_commands") == "/forward_position_controller/commands"
        assert node.resolve("joint_states") == "/joint_states" and node.resolve("imu") == "/robot/imu"
        assert node.resolve("~/clear_estop") == "/robot/robot_actor/clear_estop"
    with make_node("robot_actor", "dds", namespace="robot", domain_id=(domain + 1) % 200) as node:
        assert node.domain_id == (domain + 1) % 200  # a number in the config wins


@needs_rclpy
def test_rclpy_names_are_relative_so_a_namespace_remap_moves_the_topics(domain, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["robot_driver", "--ros-args", "-r", "__ns:=/a1"])  # as ros2 launch passes it
    node = make_node("robot_driver", "rclpy", namespace="robot")
    try:
        assert node.namespace == "/a1"
        publisher = node.create_publisher(m.JointState, "joint_states")
        assert publisher.topic == "/a1/joint_states" and node.resolve("imu") == "/a1/imu"
        assert node._node.context.get_domain_id() == domain  # ros.domain_id null: ROS_DOMAIN_ID
    finally:
        node.destroy()


@needs_rclpy
def test_rclpy_remap_from_the_config_and_domain_id_from_the_config(domain, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["robot_actor"])
    other = (domain + 1) % 200
    node = make_node("robot_actor", "rclpy", namespace="robot", remap=FORWARD, domain_id=other)
    try:
        assert node._node.context.get_domain_id() == other
        assert node.create_publisher(m.Float64MultiArray, "joint_commands").topic == FORWARD["joint_commands"]
        assert node.resolve("joint_states") == "/joint_states" and node.resolve("imu") == "/robot/imu"
    finally:
        node.destroy()


@needs_rclpy
def test_rclpy_nodes_log_to_rosout(domain, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["robot_driver"])
    node = make_node("robot_driver", "rclpy", namespace="robot")
    try:
        from rcl_interfaces.msg import Log
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        got = []
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node._node.create_subscription(Log, "/rosout", got.append, qos)
        logging.getLogger("daydream.test").warning("e-stop latched by the operator")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("e-stop latched" in g.msg for g in got):
            node.spin_once(0.05)
        (record,) = [g for g in got if "e-stop latched" in g.msg]
        assert record.level == 30 and record.name == "robot.robot_driver"
    finally:
        node.destroy()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", [pytest.param("rclpy", marks=needs_rclpy), "dds"])
def test_sigint_and_sigterm_take_one_clean_path_that_closes_the_driver(tmp_path, domain, backend):
    """Two signals in a row (a user's double Ctrl-C, a launcher's SIGTERM after SIGINT): no traceback, exit 0,
    the driver closed into its safe mode, and (rclpy) no ExternalShutdownException from rclpy's own handlers."""
    codes = {}
    for first, second in ((signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)):
        logdir = tmp_path / f"{first.name}"
        args = [sys.executable, "-m", "daydream.ros.driver_node", "--config", "a1_walk", "--set",
                "robot.driver=mujoco_a1", "--set", f"logdir={logdir}", "--set", f"ros.backend={backend}", "--set",
                "ros.status_every_s=0.05"]
        with open(tmp_path / f"{first.name}.log", "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ))
        status = logdir / "ros" / "robot_driver" / "status.json"
        deadline = time.monotonic() + 120
        while not status.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        proc.send_signal(first)
        proc.send_signal(second)
        codes[first.name] = proc.wait(60)
        log = (tmp_path / f"{first.name}.log").read_text(errors="replace")
        assert "Traceback" not in log and "ExternalShutdownException" not in log, log[-3000:]
        assert "robot_driver stopped" in log, log[-3000:]
        assert json.loads(status.read_text())["mode"] == "closed"  # the driver's close ran to the end
    assert codes == {"SIGINT": 0, "SIGTERM": 0}
