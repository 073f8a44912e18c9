"""Cross-vendor interop: daydream's Cyclone DDS backend against a stock ROS 2 node (plain rclpy on Fast DDS 3).

Every message type the graph uses crosses both ways with its content intact. Before
`daydream.ros.dds_typeinfo`, only `String` and `Bool` did: Cyclone could not parse the
XTypes type objects Fast DDS 3 announces for sequence types and refused the match.
The stock side runs in its own process (`ros_stock_peer.py`), as a user's node would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daydream.ros import messages as m
from daydream.ros.dds_backend import DdsNode
from daydream.ros.port import rclpy_available
from test_ros_messages import SAMPLES, plain

pytestmark = pytest.mark.skipif(not rclpy_available(), reason="rclpy cannot be imported: install the ros extra "
                                "(pip install -e '.[ros]', Python 3.11 wheels) or source a ROS 2 install")

PEER = Path(__file__).with_name("ros_stock_peer.py")
# the types on the graph's topics, with one non-trivial sample each
GRAPH_TYPES = {
    "joint_state": SAMPLES["sensor_msgs/msg/JointState"][0],
    "imu": SAMPLES["sensor_msgs/msg/Imu"][0],
    "array": SAMPLES["std_msgs/msg/Float64MultiArray"][0],
    "twist": SAMPLES["geometry_msgs/msg/TwistStamped"][0],
    "image": SAMPLES["sensor_msgs/msg/Image"][1],
    "string": SAMPLES["std_msgs/msg/String"][0],
    "bool": SAMPLES["std_msgs/msg/Bool"][0],
    "trajectory": SAMPLES["trajectory_msgs/msg/JointTrajectory"][0],
}


def stock_env(domain: int) -> dict[str, str]:
    """Both vendors on loopback: ROS_AUTOMATIC_DISCOVERY_RANGE is what Fast DDS 3 honours (and so does daydream)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_LOCALHOST_ONLY", "CYCLONEDDS_URI")}
    return {**env, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def run_peer(spec: dict, domain: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(PEER), json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=stock_env(domain), text=True)


def peer_result(peer: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = peer.communicate(timeout=timeout)
    assert peer.returncode == 0, f"stock peer failed:\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_graph_message_type_crosses_both_ways_with_stock_rclpy(monkeypatch):
    domain = random.SystemRandom().randint(1, 200)
    for key, value in stock_env(domain).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    received: dict[str, list] = {name: [] for name in GRAPH_TYPES}
    with DdsNode("cyclone_side", "interop", domain_id=domain) as node:
        publishers = {}
        for name, sample in GRAPH_TYPES.items():
            publishers[name] = node.create_publisher(type(sample), f"to_stock_{name}")
            node.create_subscription(type(sample), f"from_stock_{name}", received[name].append)
        # the peer stops once it has every type and daydream says (on `done`) that it has them all too
        done = node.create_publisher(m.Bool, "done")
        spec = {"subscribe": [[f"/interop/to_stock_{name}", m.ros_name(s), "default"]
                              for name, s in GRAPH_TYPES.items()]
                + [["/interop/done", "std_msgs/msg/Bool", "default"]],
                "publish": [[f"/interop/from_stock_{name}", m.ros_name(s), "default", plain(s)]
                            for name, s in GRAPH_TYPES.items()],
                "seconds": 40, "until": 3, "publish_hz": 20, "nodes": ["/interop/cyclone_side"],
                "endpoint_info": [f"/interop/to_stock_{name}" for name in GRAPH_TYPES]}
        peer = run_peer(spec, domain)
        deadline = time.monotonic() + 60
        while peer.poll() is None and time.monotonic() < deadline:
            for name, sample in GRAPH_TYPES.items():
                publishers[name].publish(sample)
            if all(received.values()):
                done.publish(m.Bool(data=True))
            for _ in range(10):
                node.spin_once(0.005)
        result = peer_result(peer)
    for name, sample in GRAPH_TYPES.items():
        topic = result["topics"][f"/interop/to_stock_{name}"]
        assert topic["count"] >= 1, f"the stock rclpy node received no {m.ros_name(sample)} from daydream"
        assert topic["first"] == plain(sample), name
        assert received[name], f"daydream received no {m.ros_name(sample)} from the stock rclpy node"
        assert plain(received[name][0]) == plain(sample), name
        # rclpy reads our writer's type hash (USER_DATA), and it equals the one rclpy computes for its own reader
        endpoints = result["endpoints"][f"/interop/to_stock_{name}"]
        (theirs,) = [h for node, h in endpoints["subscriptions"] if node == "/stock_peer"]
        assert [h for _, h in endpoints["publishers"]] == [theirs], endpoints
        assert theirs == m.TYPE_HASHES[m.ros_name(sample)]
    assert "/interop/cyclone_side" in result["nodes"]


def _driver_status(logdir: Path) -> dict:
    from daydream.runtime.status import read_status

    return read_status(logdir / "ros" / "robot_driver")


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["dds", "rclpy"])
def test_a_stock_rclpy_node_reads_and_drives_the_robot_driver(tmp_path, backend):
    """Sensors and the latched mode reach a stock node; its commands (both types) and its e-stop are obeyed;
    its `false` on the e-stop topic is not; on the rclpy backend its ~/clear_estop call clears the e-stop."""
    from daydream.config import load_config
    from daydream.ros.actor_node import robot_spec
    from processes import REPO

    domain = random.SystemRandom().randint(1, 200)
    sets = [f"logdir={tmp_path}", "robot.driver=mujoco_a1", f"ros.backend={backend}", "ros.status_every_s=0.05",
            f"ros.domain_id={domain}", "robot.driver_args={start: standing}", "robot.safety.watchdog_timeout_s=5"]
    joints = robot_spec(load_config("a1_walk", sets)).actuator.joint_names
    args = [sys.executable, "-m", "daydream.ros.driver_node", "--config", "a1_walk"]
    for item in sets:
        args += ["--set", item]
    log_path = tmp_path / "driver.log"
    with open(log_path, "wb") as out:
        driver = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=stock_env(domain))
    first, second = [0.0, 0.9, -1.8] * 4, [0.05, 0.85, -1.7] * 4
    array = ["/robot/joint_commands", "std_msgs/msg/Float64MultiArray", "default", {"data": first}]
    trajectory = ["/robot/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", "default",
                  {"joint_names": list(joints), "points": [{"positions": second}]}]
    second_array = ["/robot/joint_commands", "std_msgs/msg/Float64MultiArray", "default", {"data": second}]
    estop = ["/robot/estop", "std_msgs/msg/Bool", "default", {"data": True}]
    stray = ["/robot/estop", "std_msgs/msg/Bool", "default", {"data": False}]
    phases = [{"seconds": 60, "until": 1},  # until every topic arrived (the driver is up and discovered)
              {"seconds": 2, "publish": [array]}, {"seconds": 2, "publish": [trajectory]},
              {"seconds": 1, "publish": [estop]}, {"seconds": 2, "publish": [stray, array]}]
    if backend == "rclpy":
        phases += [{"seconds": 60, "until": 1, "publish": [second_array],  # until the service has answered
                    "services": [["/robot/robot_driver/clear_estop", "std_srvs/srv/Trigger"]]},
                   {"seconds": 2, "publish": [second_array]}]
    sensors = [["/robot/joint_states", "sensor_msgs/msg/JointState", "sensor"],
               ["/robot/imu", "sensor_msgs/msg/Imu", "sensor"],
               ["/robot/foot_contacts", "std_msgs/msg/Float64MultiArray", "sensor"],
               ["/robot/base_velocity", "geometry_msgs/msg/TwistStamped", "sensor"],
               ["/robot/safety_mode", "std_msgs/msg/String", "latched"]]
    seen: list[tuple[str, list | None]] = []
    try:
        peer = run_peer({"subscribe": sensors, "phases": phases, "publish_hz": 50}, domain)
        while peer.poll() is None:
            status = _driver_status(tmp_path)
            if status:
                seen.append((status["mode"], status["last_command"]))
            time.sleep(0.02)
        result = peer_result(peer)
        time.sleep(0.3)
        final = _driver_status(tmp_path)
    finally:
        driver.send_signal(signal.SIGINT)
        code = driver.wait(60)
    log = log_path.read_text(errors="replace")
    assert code == 0 and "Traceback" not in log, log[-3000:]
    for topic, _, _ in sensors:
        assert result["topics"][topic]["count"] >= 1, f"the stock node received nothing on {topic}"
    assert result["topics"]["/robot/joint_states"]["first"]["name"] == list(joints)
    assert result["topics"]["/robot/safety_mode"]["first"]["data"] == "active"
    assert ("active", first) in seen, "the stock node's Float64MultiArray command did not reach the driver"
    estopped_at = next((i for i, (mode, _) in enumerate(seen) if mode == "estop"), None)
    assert estopped_at is not None, "the stock node's e-stop did not latch the driver"
    assert ("active", second) in seen[:estopped_at], "the stock node's JointTrajectory did not reach the driver"
    assert final["estops"] >= 1 and final["estop_clear_refused"] >= 1, final
    if backend == "rclpy":
        assert result["services"]["/robot/robot_driver/clear_estop"]["success"] is True
        assert final["estop_clears"] == 1 and final["mode"] == "active" and final["last_command"] == second, final
        assert "e-stop cleared by the ~/clear_estop service" in log
    else:  # no services on the DDS backend: the e-stop stays latched, whatever arrives on the topic
        assert final["mode"] == "estop" and final["safety"]["commands_ignored"] > 0, final
