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
        spec = {"subscribe": [[f"/interop/to_stock_{name}", m.ros_name(s), "default"] for name, s in GRAPH_TYPES.items()]
                + [["/interop/done", "std_msgs/msg/Bool", "default"]],
                "publish": [[f"/interop/from_stock_{name}", m.ros_name(s), "default", plain(s)]
                            for name, s in GRAPH_TYPES.items()],
                "seconds": 40, "until": 3, "publish_hz": 20}
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
