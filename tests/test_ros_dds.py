"""The Cyclone DDS backend of daydream.ros on loopback: pub/sub, ROS 2 naming, QoS, errors, timers, teardown.

Every test runs on its own random DDS domain (1..200) with ROS_LOCALHOST_ONLY=1, so parallel
runs and other DDS traffic on the machine do not cross-talk.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest


from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.qos import Policy  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402

from daydream.ros import dds_backend  # noqa: E402
from daydream.ros import messages as m  # noqa: E402
from daydream.ros.dds_backend import DdsNode, dds_qos, dds_topic_name, resolve_domain_id  # noqa: E402
from daydream.ros.port import DEFAULT_QOS, LATCHED_QOS, SENSOR_QOS, QoS, make_node, rclpy_available  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def domain(monkeypatch) -> int:
    monkeypatch.setenv("ROS_LOCALHOST_ONLY", "1")
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    return random.SystemRandom().randint(1, 200)


@pytest.fixture
def node(domain):
    """A factory of DdsNodes on the test's domain, destroyed after the test."""
    made = []

    def make(name: str, namespace: str = "test", **kwargs) -> DdsNode:
        made.append(DdsNode(name, namespace, domain_id=domain, **kwargs))
        return made[-1]

    yield make
    for n in made:
        n.destroy()
    assert domain not in dds_backend._participants, "the shared participant outlived its nodes"


def spin_until(nodes, predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for n in nodes:
            n.spin_once(0.005)
        if not nodes:
            time.sleep(0.001)
        if predicate():
            return True
    return False


def publish_until(publisher, msg, nodes, predicate, timeout_s: float = 5.0) -> bool:
    """Publish every 50 ms until `predicate` (discovery takes a moment; volatile samples before it are lost)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        publisher.publish(msg)
        if spin_until(nodes, predicate, 0.05):
            return True
    return False


def joint_state(i: int = 0) -> m.JointState:
    return m.JointState(header=m.Header(stamp=m.stamp_to_time(1_700_000_000.25 + i), frame_id="base"),
                        name=["FR_hip", "FR_thigh", "FR_calf"], position=[0.1 * i, -0.8, 1.5],
                        velocity=[0.0, 0.5, -0.5], effort=[1.0, 2.0, 3.0 + i])


# -- names, QoS, domains ----------------------------------------------------------------------------

def test_names_qos_and_domain_ids(monkeypatch):
    assert dds_topic_name("/a1/joint_states") == "rt/a1/joint_states"
    with pytest.raises(ValueError, match="not fully qualified"):
        dds_topic_name("joint_states")
    sensor = dds_qos(SENSOR_QOS)
    assert Policy.Reliability.BestEffort in sensor and sensor[Policy.History] == Policy.History.KeepLast(5)
    assert sensor[Policy.Durability] == Policy.Durability.Volatile
    latched = dds_qos(LATCHED_QOS)
    assert latched[Policy.Durability] == Policy.Durability.TransientLocal
    assert latched[Policy.DurabilityService].history == Policy.History.KeepLast(1)
    assert isinstance(dds_qos(DEFAULT_QOS)[Policy.Reliability], Policy.Reliability.Reliable)
    assert dds_qos(DEFAULT_QOS)[Policy.DataRepresentation].use_cdrv0_representation  # XCDR1, as ROS 2

    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    assert resolve_domain_id() == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", " 42 ")
    assert resolve_domain_id() == 42
    assert resolve_domain_id(7) == 7  # the argument wins
    monkeypatch.setenv("ROS_DOMAIN_ID", "lab")
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID='lab' is not an integer"):
        resolve_domain_id()
    for bad in (-1, 233, 1.5, True):
        with pytest.raises(ValueError, match=r"domain_id must be an integer in 0\.\.232"):
            resolve_domain_id(bad)


def test_make_node_picks_dds_and_reads_ros_domain_id(domain, monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    n = make_node("probe", backend="dds", namespace="/robot", parameters={"rate": 50})
    try:
        assert isinstance(n, DdsNode) and n.domain_id == domain
        assert n.declare_parameter("rate", 10) == 50 and n.declare_parameter("other", 1.5) == 1.5
        assert n.resolve("imu") == "/robot/imu"
    finally:
        n.destroy()
    assert domain not in dds_backend._participants


# -- pub/sub --------------------------------------------------------------------------------------

def test_joint_state_between_two_nodes_in_one_process(node):
    talker, listener = node("driver", "a1"), node("actor", "a1")
    got = []
    listener.create_subscription(m.JointState, "joint_states", got.append, SENSOR_QOS)
    pub = talker.create_publisher(m.JointState, "joint_states", SENSOR_QOS)
    assert publish_until(pub, joint_state(0), [listener], lambda: got)
    got.clear()
    for i in range(1, 6):
        pub.publish(joint_state(i))
        assert spin_until([listener], lambda n=i: len(got) == n)
    assert got == [joint_state(i) for i in range(1, 6)]
    assert dds_backend._participants[talker.domain_id].users == 2  # one shared participant


def test_latency_and_callbacks_on_the_spinning_thread(node):
    talker, listener = node("talker"), node("listener")
    got, threads = [], []

    def on_message(msg):
        got.append((time.perf_counter(), msg))
        threads.append(threading.get_ident())

    listener.create_subscription(m.JointState, "chatter", on_message)
    pub = talker.create_publisher(m.JointState, "chatter")
    stop = threading.Event()
    spinner = threading.Thread(target=listener.spin, args=(stop,), daemon=True)
    spinner.start()  # the listener spins on its own thread...
    assert publish_until(pub, joint_state(), [], lambda: got)
    latencies = []
    for i in range(100):  # ...while this thread publishes
        count = len(got)
        sent = time.perf_counter()
        pub.publish(joint_state(i))
        deadline = sent + 2.0
        while len(got) == count and time.perf_counter() < deadline:
            time.sleep(0)
        assert len(got) > count, "a sample was lost on a reliable topic"
        latencies.append(got[-1][0] - sent)
    stop.set()
    spinner.join(2.0)
    assert not spinner.is_alive()
    assert set(threads) == {spinner.ident}
    median = statistics.median(latencies)
    print(f"in-process JointState publish->callback latency: median {median * 1e6:.0f} us, "
          f"max {max(latencies) * 1e6:.0f} us")
    assert median < 0.005  # typically ~70 us; generous for a loaded CI machine


def test_image_320x240_between_nodes(node):
    talker, listener = node("camera"), node("viewer")
    got = []
    listener.create_subscription(m.Image, "camera/image_raw", got.append, SENSOR_QOS)
    pub = talker.create_publisher("sensor_msgs/msg/Image", "camera/image_raw", SENSOR_QOS)  # a ROS 2 name works too
    pixels = np.random.default_rng(1).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    image = m.Image(header=m.Header(stamp=m.stamp_to_time(12.5), frame_id="camera"), height=240, width=320,
                    encoding="rgb8", step=960, data=pixels.tobytes())
    assert publish_until(pub, image, [listener], lambda: got)
    assert got[0] == image and isinstance(got[0].data, bytes)
    np.testing.assert_array_equal(np.frombuffer(got[0].data, np.uint8).reshape(240, 320, 3), pixels)


CHILD = """
import sys, time
from daydream.ros import messages as m
from daydream.ros.dds_backend import DdsNode

node = DdsNode("echo", "xproc", domain_id=int(sys.argv[1]))
pong = node.create_publisher(m.JointState, "pong")
done = []

def on_ping(msg):
    if msg.name == ["quit"]:
        done.append(True)
    else:
        pong.publish(msg)

node.create_subscription(m.JointState, "ping", on_ping)
deadline = time.monotonic() + 30
while not done and time.monotonic() < deadline:
    node.spin_once(0.05)
node.destroy()
sys.exit(0 if done else 3)
"""


def test_joint_state_between_two_processes(node, domain):
    env = dict(os.environ, ROS_LOCALHOST_ONLY="1", PYTHONPATH=str(REPO))
    env.pop("CYCLONEDDS_URI", None)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(domain)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        me = node("pinger", "xproc")
        got = []
        me.create_subscription(m.JointState, "pong", got.append)
        ping = me.create_publisher(m.JointState, "ping")
        assert publish_until(ping, joint_state(0), [me], lambda: got, timeout_s=20), "no echo from the other process"
        spin_until([me], lambda: False, 0.1)  # let echoes of the discovery pings drain
        got.clear()
        round_trips = []
        for i in range(1, 31):
            sent = time.perf_counter()
            ping.publish(joint_state(i))
            assert spin_until([me], lambda n=i: len(got) == n, 5.0), f"echo {i} lost"
            round_trips.append(time.perf_counter() - sent)
        assert got == [joint_state(i) for i in range(1, 31)]
        print(f"cross-process JointState round trip: median {statistics.median(round_trips) * 1e6:.0f} us")
        quit_msg = m.JointState(name=["quit"])
        ping.publish(quit_msg)
        out, _ = child.communicate(timeout=15)
        assert child.returncode == 0, out
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


# -- ROS 2 wire conventions --------------------------------------------------------------------------

def test_topics_carry_the_rt_prefix_and_ros2_type_names(node, domain):
    talker, listener = node("talker", "ns"), node("listener", "ns")
    participant = DomainParticipant(domain)
    try:
        raw_topic = Topic(participant, "rt/ns/safety_mode", m.String)
        raw_reader = DataReader(participant, raw_topic, dds_qos(LATCHED_QOS))
        pub = talker.create_publisher(m.String, "safety_mode", LATCHED_QOS)
        pub.publish(m.String(data="damping: operator"))
        deadline = time.monotonic() + 5
        samples = []
        while not samples and time.monotonic() < deadline:
            samples = raw_reader.take(N=10)
            time.sleep(0.01)
        assert [s.data for s in samples] == ["damping: operator"]
        [handle] = raw_reader.get_matched_publications()
        endpoint = raw_reader.get_matched_publication_data(handle)
        assert endpoint.topic_name == "rt/ns/safety_mode"
        assert endpoint.type_name == "std_msgs::msg::dds_::String_"
        assert endpoint.qos[Policy.Durability] == Policy.Durability.TransientLocal

        # the other way: a plain DDS writer (as rmw_cyclonedds writes) reaches a node's subscription
        got = []
        listener.create_subscription(m.Bool, "/estop", got.append)
        raw_writer = DataWriter(participant, Topic(participant, "rt/estop", m.Bool), dds_qos(DEFAULT_QOS))
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            raw_writer.write(m.Bool(data=True))
            spin_until([listener], lambda: got, 0.05)
        assert got and got[0] == m.Bool(data=True)
    finally:
        dds_backend._delete(participant)


# -- QoS -----------------------------------------------------------------------------------------------

def test_latched_publisher_delivers_its_last_message_to_a_late_subscriber(node):
    driver = node("driver")
    pub = driver.create_publisher(m.String, "safety_mode", LATCHED_QOS)
    pub.publish(m.String(data="active"))
    pub.publish(m.String(data="damping"))
    time.sleep(0.1)
    late, volatile = node("late_operator_ui"), node("volatile_listener")
    got, volatile_got = [], []
    late.create_subscription(m.String, "safety_mode", got.append, LATCHED_QOS)
    volatile.create_subscription(m.String, "safety_mode", volatile_got.append, DEFAULT_QOS)
    assert spin_until([late, volatile], lambda: got)
    spin_until([late, volatile], lambda: False, 0.3)
    assert got == [m.String(data="damping")]  # depth 1: only the last one
    assert volatile_got == []  # a volatile subscriber gets no history


def test_transient_local_keeps_depth_messages_for_late_subscribers(node):
    driver = node("driver")
    keep3 = QoS("reliable", "transient_local", 3)
    pub = driver.create_publisher(m.String, "log", keep3)
    for word in ("one", "two", "three", "four", "five"):
        pub.publish(m.String(data=word))
    late = node("late")
    got = []
    late.create_subscription(m.String, "log", got.append, keep3)
    assert spin_until([late], lambda: len(got) == 3)
    spin_until([late], lambda: False, 0.2)
    assert [g.data for g in got] == ["three", "four", "five"]


def test_best_effort_works_and_reliable_subscriber_ignores_best_effort_publisher(node):
    talker, sensor_listener, strict_listener = node("talker"), node("sensor_listener"), node("strict_listener")
    got, strict_got = [], []
    sensor_listener.create_subscription(m.Imu, "imu", got.append, SENSOR_QOS)
    strict_listener.create_subscription(m.Imu, "imu", strict_got.append, QoS("reliable", "volatile", 10))
    pub = talker.create_publisher(m.Imu, "imu", SENSOR_QOS)
    imu = m.Imu(orientation=m.Quaternion(x=0.1, w=0.99), linear_acceleration=m.Vector3(z=9.81),
                orientation_covariance=[0.01] * 9)
    assert publish_until(pub, imu, [sensor_listener, strict_listener], lambda: got)
    assert got[-1] == imu
    assert strict_got == []  # DDS (and ROS 2) QoS rules: reliable readers do not match best-effort writers


# -- errors --------------------------------------------------------------------------------------------

def test_a_raising_callback_is_logged_and_the_node_keeps_working(node, caplog):
    talker, listener = node("talker"), node("listener")
    got = []

    def fragile(msg):
        if msg.data == "bad":
            raise RuntimeError("cannot handle this message")
        got.append(msg.data)

    listener.create_subscription(m.String, "cmd", fragile)
    pub = talker.create_publisher(m.String, "cmd")
    assert publish_until(pub, m.String(data="warmup"), [listener], lambda: got)
    with caplog.at_level(logging.ERROR, logger="daydream.ros.dds_backend"):
        pub.publish(m.String(data="bad"))
        pub.publish(m.String(data="good"))
        assert spin_until([listener], lambda: "good" in got)
    records = [r for r in caplog.records if "callback for /test/cmd raised" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info and "cannot handle" in str(records[0].exc_info[1])

    ticks = []

    def bad_timer():
        ticks.append(1)
        raise ValueError("timer bug")

    listener.create_timer(0.01, bad_timer)
    with caplog.at_level(logging.ERROR, logger="daydream.ros.dds_backend"):
        assert spin_until([listener], lambda: len(ticks) >= 3)
    assert sum("timer callback raised" in r.getMessage() for r in caplog.records) >= 3


def test_unknown_and_wrong_types_give_clear_errors(node):
    n = node("typed")
    with pytest.raises(ValueError, match="unknown ROS 2 message type 'sensor_msgs/msg/PointCloud2'"):
        n.create_publisher("sensor_msgs/msg/PointCloud2", "points")
    with pytest.raises(ValueError, match="unknown ROS 2 message type"):
        n.create_subscription("sensor_msgs/msg/PointCloud2", "points", print)
    with pytest.raises(TypeError, match="not a daydream.ros.messages type"):
        n.create_publisher(dict, "points")
    pub = n.create_publisher(m.Bool, "estop")
    with pytest.raises(TypeError, match="sends std_msgs/msg/Bool, not String"):
        pub.publish(m.String(data="x"))
    with pytest.raises(ValueError, match="cannot publish"):
        n.create_publisher(m.Imu, "imu").publish(m.Imu(orientation_covariance=[1.0]))
    with pytest.raises(TypeError, match="cannot also use it with std_msgs/msg/String"):
        n.create_subscription(m.String, "estop", print)
    with pytest.raises(ValueError, match="not a valid ROS 2 name"):
        n.create_publisher(m.Bool, "bad topic")
    with pytest.raises(ValueError, match="timer period"):
        n.create_timer(0.0, print)


# -- timers and teardown ----------------------------------------------------------------------------

def test_timers_fire_on_a_drift_free_schedule(node):
    n = node("clock")
    period = 0.02
    ticks = []

    def slow_tick():
        ticks.append(time.monotonic())
        time.sleep(0.005)  # a schedule of "now + period" after each callback would fall to 1/0.025 Hz

    created = time.monotonic()
    timer = n.create_timer(period, slow_tick)
    spin_until([n], lambda: time.monotonic() - created >= 0.6, 2.0)
    assert 26 <= len(ticks) <= 31, len(ticks)
    lateness = [t - created - period * round((t - created) / period) for t in ticks]
    assert statistics.median(lateness) < 0.004, lateness
    timer.cancel()
    count = len(ticks)
    spin_until([n], lambda: False, 0.1)
    assert len(ticks) == count  # cancelled
    assert abs(n.now() - time.time()) < 0.01  # the clock is the wall clock


def test_destroy_releases_readers_and_writers(node, domain):
    talker, listener = node("talker"), node("listener")
    got = []
    listener.create_subscription(m.String, "chatter", got.append)
    pub = talker.create_publisher(m.String, "chatter")
    assert publish_until(pub, m.String(data="hello"), [listener], lambda: got)
    participant = DomainParticipant(domain)
    try:
        raw = DataReader(participant, Topic(participant, "rt/test/chatter", m.String), dds_qos(DEFAULT_QOS))
        assert spin_until([], lambda: len(raw.get_matched_publications()) == 1)
        talker.destroy()
        assert spin_until([], lambda: raw.get_matched_publications() == [])  # its writer is gone
        talker.destroy()  # idempotent
        talker.spin_once(0.01)  # a destroyed node does nothing
        with pytest.raises(RuntimeError, match="node talker was destroyed"):
            pub.publish(m.String(data="after"))
        with pytest.raises(RuntimeError, match="was destroyed"):
            talker.create_publisher(m.String, "chatter")
        assert dds_backend._participants[domain].users == 1  # listener keeps the participant
        listener.destroy()
        assert domain not in dds_backend._participants
    finally:
        dds_backend._delete(participant)


def test_destroy_from_another_thread_stops_spin(node):
    n = node("spinner")
    n.create_subscription(m.Bool, "estop", lambda msg: None)
    spinner = threading.Thread(target=n.spin, daemon=True)  # no stop event: ends with the node
    spinner.start()
    time.sleep(0.05)
    n.destroy()
    spinner.join(2.0)
    assert not spinner.is_alive()


@pytest.mark.skipif(not rclpy_available(), reason="rclpy (ROS 2) is not installed here")
def test_rclpy_node_talks_to_a_dds_node(node, domain, monkeypatch):  # pragma: no cover - needs ROS 2
    from daydream.ros.rclpy_backend import RclpyNode

    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))  # read when rclpy initialises
    ros = RclpyNode("ros_listener", "test")
    try:
        got = []
        ros.create_subscription(m.JointState, "joint_states", got.append)
        pub = node("dds_talker").create_publisher(m.JointState, "joint_states")
        assert publish_until(pub, joint_state(3), [ros], lambda: got, timeout_s=10)
        assert got[0] == joint_state(3)
    finally:
        ros.destroy()
