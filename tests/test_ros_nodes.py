"""daydream's ROS 2 nodes without a middleware: sensor samples to messages and back
(time-synchronised), bad input dropped with a reason, the robot_driver node's commands,
watchdog and e-stop on the simulated A1, and the actor's view of the robot's topics
(`TopicsDriver`) going stale and recovering. An in-memory bus stands in for DDS; the
DDS graph itself is tested in test_ros_graph.py."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from daydream.config import load_config
from daydream.drivers import DriverError
from daydream.drivers.mujoco_a1 import MuJoCoA1Driver
from daydream.drivers.registry import make_safe_driver
from daydream.ros import messages as m
from daydream.ros import topics
from daydream.ros.conversions import (BadMessage, SampleAssembler, command_from_array, command_from_trajectory,
                                      command_message, message_values, sample_messages, sensor_topics)
from daydream.ros.driver_node import DriverNode, DriverNodeCore
from daydream.ros.topics_driver import TopicsDriver
from ros_fakes import Bus, FakeNode

SENSORS = (topics.JOINT_STATES.name, topics.IMU.name, topics.FOOT_CONTACTS.name, topics.BASE_VELOCITY.name)


@pytest.fixture
def a1():
    driver = MuJoCoA1Driver(start="standing")
    driver.open()
    driver.advance(0.2)
    yield driver
    driver.close()


def test_a_sample_survives_the_trip_through_messages(a1):
    sample = a1.read()
    msgs = sample_messages(sample, a1.spec, stamp=123.25)
    assert set(msgs) == set(SENSORS) == set(sensor_topics(a1.spec))
    assembler = SampleAssembler(a1.spec, SENSORS)
    for topic, msg in msgs.items():
        assembler.add(topic, msg)
    back = assembler.sample()
    assert back.stamp == pytest.approx(123.25, abs=1e-9)
    for key in ("joint_position", "joint_velocity", "joint_torque", "imu_orientation", "imu_angular_velocity",
                "imu_linear_acceleration", "base_velocity"):
        np.testing.assert_allclose(back.values[key], sample.values[key], rtol=1e-6, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(back.values["foot_contact"], sample.values["foot_contact"])
    imu = msgs[topics.IMU.name]
    assert imu.orientation.w == pytest.approx(float(sample.values["imu_orientation"][0]))  # wxyz -> ROS xyzw


def test_camera_image_round_trip(a1):
    driver = MuJoCoA1Driver(start="standing", camera=True, image_size=(32, 48))
    with driver:
        sample = driver.read()
        msg = sample_messages(sample, driver.spec, 1.0, camera=True)[topics.IMAGE.name]
        assert (msg.height, msg.width, msg.encoding, msg.step) == (32, 48, "rgb8", 144)
        _, values = message_values(topics.IMAGE.name, msg, driver.spec)
        np.testing.assert_array_equal(values["image"], sample.values["image"])


def test_assembler_picks_the_newest_instant_every_sensor_has(a1):
    assembler = SampleAssembler(a1.spec, SENSORS, tolerance_s=0.001)
    first = sample_messages(a1.read(), a1.spec, stamp=10.0)
    for topic, msg in first.items():
        assembler.add(topic, msg)
    a1.advance(0.05)
    second = sample_messages(a1.read(), a1.spec, stamp=10.05)
    # the newest instant is incomplete (no IMU yet): the previous complete one is used
    for topic in (topics.JOINT_STATES.name, topics.BASE_VELOCITY.name):
        assembler.add(topic, second[topic])
    assert assembler.sample().stamp == pytest.approx(10.0)
    assembler.add(topics.IMU.name, second[topics.IMU.name])
    assert assembler.sample().stamp == pytest.approx(10.05)
    assert SampleAssembler(a1.spec, SENSORS).sample() is None  # nothing yet


def test_bad_sensor_messages_are_rejected_with_a_reason(a1):
    msgs = sample_messages(a1.read(), a1.spec, stamp=5.0)
    assembler = SampleAssembler(a1.spec, SENSORS)
    joints = msgs[topics.JOINT_STATES.name]
    short = dataclasses.replace(joints, position=list(joints.position)[:11])
    with pytest.raises(BadMessage, match="12 names but 11 positions"):
        assembler.add(topics.JOINT_STATES.name, short)
    nan = dataclasses.replace(joints, position=[float("nan")] * 12)
    with pytest.raises(BadMessage, match="non-finite"):
        assembler.add(topics.JOINT_STATES.name, nan)
    foreign = dataclasses.replace(joints, name=[f"j{i}" for i in range(12)])
    with pytest.raises(BadMessage, match="not the driver's"):
        assembler.add(topics.JOINT_STATES.name, foreign)
    assembler.add(topics.JOINT_STATES.name, joints)
    older = dataclasses.replace(joints, header=m.Header(stamp=m.stamp_to_time(4.0), frame_id="base"))
    with pytest.raises(BadMessage, match="out of order"):
        assembler.add(topics.JOINT_STATES.name, older)
    assert assembler.dropped[topics.JOINT_STATES.name] == 4
    # joints in another order are matched by name
    order = list(range(12))[::-1]
    shuffled = dataclasses.replace(joints, header=m.Header(stamp=m.stamp_to_time(6.0), frame_id="base"),
                                   name=[joints.name[i] for i in order],
                                   position=[joints.position[i] for i in order],
                                   velocity=[joints.velocity[i] for i in order],
                                   effort=[joints.effort[i] for i in order])
    _, values = message_values(topics.JOINT_STATES.name, shuffled, a1.spec)
    np.testing.assert_allclose(values["joint_position"], np.asarray(joints.position, np.float32))


def test_commands_from_both_message_types(a1):
    spec = a1.spec
    target = np.linspace(-0.1, 0.1, 12)
    np.testing.assert_allclose(command_from_array(command_message(target), spec), target)
    with pytest.raises(BadMessage, match="11 values"):
        command_from_array(m.Float64MultiArray(data=[0.0] * 11), spec)
    with pytest.raises(BadMessage, match="non-finite"):
        command_from_array(m.Float64MultiArray(data=[float("nan")] * 12), spec)
    names = list(spec.actuator.joint_names)[::-1]
    trajectory = m.JointTrajectory(joint_names=names, points=[m.JointTrajectoryPoint(positions=list(target[::-1]))])
    np.testing.assert_allclose(command_from_trajectory(trajectory, spec), target)
    with pytest.raises(BadMessage, match="does not name joints"):
        command_from_trajectory(m.JointTrajectory(joint_names=names[:3], points=[
            m.JointTrajectoryPoint(positions=[0.0] * 3)]), spec)
    with pytest.raises(BadMessage, match="without points"):
        command_from_trajectory(m.JointTrajectory(joint_names=names, points=[]), spec)


def driver_graph(**safety):
    config = load_config("a1_walk", ["robot.driver_args={start: standing}",
                                     *(f"robot.safety.{k}={v}" for k, v in safety.items())])
    bus = Bus()
    core = DriverNodeCore(make_safe_driver(config.robot), publish_hz=100.0)
    core.open()
    driver_node = DriverNode(FakeNode(bus, "robot_driver"), core)
    return bus, core, driver_node


def run(bus: Bus, nodes, seconds: float, period: float = 0.01, before_tick=None) -> None:
    for _ in range(int(round(seconds / period))):
        bus.time += period
        if before_tick:
            before_tick()
        for node in nodes:
            node.spin_once(0)


def test_driver_node_applies_commands_and_its_watchdog_takes_over(caplog):
    bus, core, driver_node = driver_graph(watchdog_timeout_s=0.2)
    operator = FakeNode(bus, "operator")
    commands = operator.create_publisher(m.Float64MultiArray, topics.JOINT_COMMANDS.name)
    estop = operator.create_publisher(m.Bool, topics.ESTOP.name)
    target = core.driver.spec.actuator.low_array() * 0 + np.array([0.0, 0.9, -1.8] * 4)
    run(bus, [driver_node.node], 0.1, before_tick=lambda: commands.publish(command_message(target)))
    assert core.mode() == "active" and core.counters["commands"] >= 9
    assert len(bus.published["/robot/joint_states"]) == 10 and bus.published["/robot/safety_mode"][0].data == "active"
    # bad commands are logged and dropped; the robot keeps its last target
    with caplog.at_level(logging.WARNING):
        commands.publish(m.Float64MultiArray(data=[float("nan")] * 12))
        commands.publish(m.Float64MultiArray(data=[0.0] * 3))
        run(bus, [driver_node.node], 0.01)
    assert core.counters["bad_commands"] == 2 and "non-finite" in caplog.text and "3 values" in caplog.text
    # silence: the watchdog puts the actuators in damping, announced on safety_mode
    run(bus, [driver_node.node], 0.3)
    assert core.mode() == "damping" and core.driver.counters["watchdog_trips"] == 1
    assert bus.published["/robot/safety_mode"][-1].data.startswith("damping")
    # commands come back: active again; the e-stop latches until cleared
    run(bus, [driver_node.node], 0.05, before_tick=lambda: commands.publish(command_message(target)))
    assert core.mode() == "active"
    estop.publish(m.Bool(data=True))
    run(bus, [driver_node.node], 0.05, before_tick=lambda: commands.publish(command_message(target)))
    assert core.mode() == "estop" and bus.published["/robot/safety_mode"][-1].data.startswith("estop")
    # a false on the e-stop topic (a stray message, a stuck publisher) does not re-arm the robot
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            estop.publish(m.Bool(data=False))
            run(bus, [driver_node.node], 0.05, before_tick=lambda: commands.publish(command_message(target)))
    assert core.mode() == "estop" and core.counters["estop_clear_refused"] == 3
    assert "e-stop stays latched" in caplog.text
    # clearing is an explicit, logged call of the robot_driver's ~/clear_estop service
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        success, message = bus.call("/robot/robot_driver/clear_estop")
    assert success and "cleared" in message and "e-stop cleared by the ~/clear_estop service" in caplog.text
    run(bus, [driver_node.node], 0.05, before_tick=lambda: commands.publish(command_message(target)))
    assert core.mode() == "active" and core.counters["estop_clears"] == 1
    assert bus.call("/robot/robot_driver/clear_estop") == (True, "the e-stop was not latched")
    driver_node.close()
    assert core.mode() == "closed"


def test_topics_driver_reads_the_robot_and_stops_commanding_when_it_goes_silent():
    bus, core, driver_node = driver_graph()
    actor_node = FakeNode(bus, "robot_actor")
    spec = core.driver.spec
    view = TopicsDriver(actor_node, spec, sensor_topics(spec), tolerance_s=0.001)
    view.open()
    with pytest.raises(DriverError, match="robot_driver node running"):
        view.read()
    run(bus, [driver_node.node, actor_node], 0.1)
    sample = view.read()
    assert bus.time - sample.stamp <= 0.011  # the newest sample, one publish period old at most
    np.testing.assert_allclose(sample.values["joint_position"], core.driver.read().values["joint_position"],
                               atol=0.05)
    view.write(dataclasses.replace(_command(spec), stamp=view.now()))
    run(bus, [driver_node.node, actor_node], 0.01)
    assert core.counters["commands"] == 1
    # the driver stops publishing: samples get old; in safe mode the view withholds commands
    run(bus, [actor_node], 0.5)
    assert view.now() - view.read().stamp > 0.25
    view.safe_mode("damping", "sensor data is 0.5 s old")
    view.write(_command(spec))
    assert view.counters["commands_withheld"] == 1 and view.health().mode == "damping"
    view.resume()
    view.write(_command(spec))
    assert view.counters["commands_sent"] == 2


def _command(spec):
    from daydream.drivers import Command

    return Command(np.array([0.0, 0.9, -1.8] * 4))


def test_trajectory_commands_carry_the_observation_stamp_and_the_driver_measures_latency():
    bus, core, driver_node = driver_graph()
    actor_node = FakeNode(bus, "robot_actor")
    spec = core.driver.spec
    view = TopicsDriver(actor_node, spec, sensor_topics(spec), tolerance_s=0.001, command_type="trajectory")
    view.open()
    run(bus, [driver_node.node, actor_node], 0.05)
    sample = view.read()
    view.write(_command(spec))
    bus.time += 0.003  # the command arrives 3 ms later
    driver_node.node.spin_once(0)
    sent = bus.published["/robot/joint_trajectory"][-1]
    assert m.time_to_seconds(sent.header.stamp) == pytest.approx(sample.stamp)
    assert core.counters["commands"] == 1
    latency = core.status()["latency"]
    assert latency["n"] == 1 and latency["p50_ms"] == pytest.approx(1000 * (bus.time - sample.stamp), abs=0.01)
    with pytest.raises(ValueError, match="array or trajectory"):
        TopicsDriver(actor_node, spec, sensor_topics(spec), command_type="twist")


def test_bad_messages_on_the_actors_topics_are_logged_and_dropped(caplog):
    bus, core, driver_node = driver_graph()
    actor_node = FakeNode(bus, "robot_actor")
    spec = core.driver.spec
    view = TopicsDriver(actor_node, spec, sensor_topics(spec), tolerance_s=0.001)
    run(bus, [driver_node.node, actor_node], 0.05)
    good = view.read()
    rogue = FakeNode(bus, "rogue").create_publisher(m.JointState, topics.JOINT_STATES.name)
    with caplog.at_level(logging.WARNING):
        rogue.publish(m.JointState(header=m.Header(stamp=m.stamp_to_time(bus.time + 1)), name=["a", "b"],
                                   position=[0.0]))
        rogue.publish(m.JointState(header=m.Header(stamp=m.stamp_to_time(1.0)), name=list(spec.actuator.joint_names),
                                   position=[0.0] * 12))  # older than what arrived: out of order
        actor_node.spin_once(0)
    assert view.counters["bad_messages"] == 2 and view.health().details["dropped"] == {"joint_states": 2}
    assert "2 names but 1 positions" in caplog.text and "out of order" in caplog.text
    assert view.read().stamp == good.stamp  # the good data stands
    with pytest.raises(ValueError, match="known"):
        m.message_type("sensor_msgs/msg/LaserScan")
