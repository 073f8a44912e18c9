"""The serial transport and the Dynamixel arm driver against the emulated servo bus on a pty,
through the real pyserial code path: round trips, every injected fault (dropped bytes, bad CRC,
slow replies, silence, unplug/replug, power loss), port errors, limits, safe modes, lifecycle."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from daydream.drivers import Command, DriverError, make_driver
from daydream.drivers import serial_link as dserial
from daydream.drivers.dynamixel import protocol as dxl
from daydream.drivers.dynamixel.arm import DynamixelArm
from daydream.drivers.dynamixel.emulator import EmulatedBus
from daydream.drivers.safety import SafetyLayer

pytestmark = pytest.mark.timeout(60)

IDS = [1, 2, 3, 4]
NAMES = ["base", "shoulder", "elbow", "wrist"]
LIMITS = [[-1.5, 1.5], [-1.0, 1.2], [-2.0, 2.0], [-0.5, 0.5]]
TIMEOUT = 0.25          # generous: the CI box is loaded; replies normally take well under 1 ms


def make_arm(port: str, **kwargs) -> DynamixelArm:
    args = dict(ids=IDS, joint_names=NAMES, port=port, position_limits=LIMITS, velocity_limit=4.0,
                timeout_s=TIMEOUT, retries=2, reconnect_timeout_s=5.0, reconnect_interval_s=0.05)
    args.update(kwargs)
    return DynamixelArm(**args)


@pytest.fixture
def bus():
    with EmulatedBus(ids=IDS, positions={3: 2048 + 512}) as b:     # elbow starts at +pi/4
        yield b


@pytest.fixture
def arm(bus):
    a = make_arm(bus.port)
    a.open()
    yield a
    a.close()


def joint_angles(arm: DynamixelArm, k: int, ticks: list[int]) -> np.ndarray:
    """Goal ticks of joint k -> joint angles (the arm converts whole (.., n_joints) arrays)."""
    full = np.full((len(ticks), len(IDS)), 2048.0)
    full[:, k] = ticks
    return arm.ticks_to_rad(full)[:, k]


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- round trips --------------------------------------------------------------------------

def test_link_round_trip_through_pyserial(bus):
    link = dserial.SerialLink(dserial.SerialConfig(port=bus.port, timeout_s=TIMEOUT), dxl.DynamixelFramer())
    with link:
        status = dxl.decode_status(link.transact(dxl.ping_packet(2)))
        assert dxl.parse_ping(status) == (1030, 45)
        replies = link.exchange(dxl.sync_read_packet([1, 3], 132, 4))
        positions = {i: dxl.from_bytes(dxl.decode_status(f).params) for i, f in replies.items()}
        assert positions == {1: 2048, 3: 2048 + 512}
        assert link.transact(dxl.sync_write_packet(65, 1, {1: b"\x01"}), expect_reply=False) is None
        with pytest.raises(dserial.NoReplyError, match=r"PING to id 9 after 3 tries.*\[9\] did not answer") as info:
            link.transact(dxl.ping_packet(9))
        assert info.value.missing == (9,) and info.value.attempts == 3
    assert not link.is_open


def test_open_read_write_round_trip(bus, arm):
    assert arm.health().ok and arm.health().mode == "active"
    assert arm.models == {i: 1030 for i in IDS}
    sample = arm.read()
    assert set(sample.values) == {"joint_position", "joint_velocity", "joint_current"}
    np.testing.assert_allclose(sample.values["joint_position"], [0, 0, math.pi / 4, 0], atol=1e-6)
    assert abs(sample.stamp - arm.now()) < 1.0
    # Bring-up: position mode, the servos' own limits set to the joint limits, goal = present, torque on.
    servos = bus.state()["servos"]
    for k, i in enumerate(IDS):
        s = servos[str(i)]
        assert s["mode"] == dxl.OPERATING_MODE_POSITION and s["torque"]
        assert (s["min_limit"], s["max_limit"]) == (arm.tick_low[k], arm.tick_high[k])
        assert s["profile_velocity"] == int(4.0 / (0.229 * 2 * math.pi / 60))
    assert bus.goals() == [(1, 2048), (2, 2048), (3, 2560), (4, 2048)]
    target = np.array([0.4, -0.3, 1.0, 0.2])
    arm.write(Command(target))
    assert wait_until(lambda: np.allclose(arm.read().values["joint_position"], target, atol=2e-3))
    assert arm.health().details["writes"] == 1


def test_current_limit_uses_current_based_position_mode(bus):
    arm = make_arm(bus.port, current_limit=1.0, torque_constant=1.5)
    with arm:
        servos = bus.state()["servos"]
        assert all(s["mode"] == dxl.OPERATING_MODE_CURRENT_POSITION for s in servos.values())
        assert all(s["goal_current"] == int(1.0 / 0.00269) for s in servos.values())
        assert arm.spec.actuator.torque_limit == (1.5,) * 4
        arm.write(Command(np.array([1.0, 0.0, 0.785, 0.0])))
        sample = arm.read()
        assert "joint_torque" in sample.values
        assert np.all(np.abs(sample.values["joint_current"]) <= 1.0 + 1e-6)


# -- injected faults ----------------------------------------------------------------------

def test_dropped_bytes_are_retried(bus, arm):
    link = arm.link
    bus.inject(drop=1)
    np.testing.assert_allclose(arm.read().values["joint_position"][2], math.pi / 4, atol=1e-6)
    assert link.counters["retries"] >= 1
    assert link.counters["timeouts"] + link.counters["crc_errors"] >= 1
    assert arm.health().ok


def test_bad_crc_is_retried(bus, arm):
    link = arm.link
    bus.inject(corrupt=2)
    np.testing.assert_allclose(arm.read().values["joint_position"][2], math.pi / 4, atol=1e-6)
    assert link.counters["crc_errors"] >= 2 and link.counters["retries"] >= 1
    assert arm.health().ok


def test_slow_replies(bus, arm):
    link = arm.link
    bus.inject(delay_s=0.02)                     # slow but within the timeout: no retry
    arm.read()
    assert link.counters["retries"] == 0
    bus.inject(delay_s=0.4, delay_count=4)       # one whole sync read late: the retry gets it
    arm.read()
    assert link.counters["timeouts"] >= 1 and link.counters["retries"] >= 1
    bus.inject(delay_s=1.0, delay_count=-1)      # always too late: a clear error naming the servos
    started = time.monotonic()
    with pytest.raises(DriverError, match=r"servo\(s\) 1 \(base\), 2 \(shoulder\).*did not answer the state "
                                          r"SYNC_READ.*after 3 tries of 250 ms"):
        arm.read()
    assert time.monotonic() - started < 3 * TIMEOUT + 1.0
    assert not arm.health().ok and "did not answer" in arm.health().message
    bus.inject(delay_s=0.0)
    time.sleep(1.1)                              # let the late replies drain
    arm.read()
    assert arm.health().ok


def test_silent_device_fails_clearly_and_recovers(bus, arm):
    bus.inject(silent_s=30)
    with pytest.raises(DriverError, match=r"did not answer.*check power, wiring, ids and baudrate"):
        arm.read()
    bus.inject(silent_s=0)
    arm.read()
    assert arm.health().ok


def test_unplug_and_replug_reconnects(bus, arm):
    link = arm.link
    bus.unplug(0.4)
    sample = arm.read()                          # blocks while the adapter is away, then reconnects
    np.testing.assert_allclose(sample.values["joint_position"][2], math.pi / 4, atol=1e-6)
    assert link.counters["reconnects"] == 1 and link.counters["disconnects"] == 1
    bus.unplug(0.3)
    arm.write(Command(np.array([0.1, 0.1, 0.5, 0.1])))   # a write notices the unplug too
    assert link.counters["reconnects"] == 2
    assert wait_until(lambda: abs(arm.read().values["joint_position"][0] - 0.1) < 2e-3)
    assert arm.health().ok and arm.health().details["link_reconnects"] == 2


def test_unplugged_for_good_fails_clearly_then_recovers(bus):
    arm = make_arm(bus.port, reconnect_timeout_s=0.4)
    with arm:
        bus.unplug(None)
        with pytest.raises(DriverError, match="did not come back within 0.4 s"):
            arm.read()
        started = time.monotonic()
        with pytest.raises(DriverError, match="disconnected and still cannot be opened"):
            arm.read()                           # later calls fail at once
        assert time.monotonic() - started < 0.3
        bus.replug()
        arm.read()
        assert arm.health().ok


def test_power_loss_while_unplugged_goes_limp_then_resumes(bus, arm):
    bus.unplug(None)
    bus.power_cycle()
    bus.replug()
    with pytest.raises(DriverError, match=r"lost torque.*call resume\(\)"):
        arm.read()
    assert arm.health().mode == "damping"
    assert not any(s["torque"] for s in bus.state()["servos"].values())
    arm.resume()
    assert arm.health().mode == "active"
    assert all(s["torque"] for s in bus.state()["servos"].values())
    arm.read()


# -- port errors --------------------------------------------------------------------------

def test_missing_port_lists_the_ports(tmp_path):
    arm = make_arm(str(tmp_path / "ttyUSB7"))
    with pytest.raises(dserial.PortMissingError, match=r"ttyUSB7 does not exist \((ports: |no serial ports found)"):
        arm.open()
    assert arm.health().mode == "closed"


def test_busy_port(bus, arm):
    other = make_arm(bus.port)
    with pytest.raises(dserial.PortBusyError, match="is busy: another program"):
        other.open()
    arm.read()                                   # the first one is unaffected


def test_device_that_does_not_answer(bus):
    with EmulatedBus(ids=[1, 2, 3]) as partial:
        arm = make_arm(partial.port, timeout_s=0.1)
        with pytest.raises(DriverError, match=r"no answer from servo id\(s\) 4 \(wrist\).*answered: \[1, 2, 3\]"):
            arm.open()
        assert arm.health().mode == "closed"
    arm = make_arm(bus.port, ids=[11, 12, 13, 14], timeout_s=0.05, retries=0)
    with pytest.raises(DriverError, match="no servo answered at all: most likely the baudrate or the power"):
        arm.open()
    make_arm(bus.port).open()                    # the failed opens released the port


def test_open_by_usb_id(bus, monkeypatch):
    def port(device, vid, pid, serial_number):
        return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial_number,
                               description="USB <-> RS485")

    ports = [port("/dev/ttyS0", None, None, None), port(bus.port, 0x0403, 0x6014, "FT1ABC")]
    monkeypatch.setattr(dserial.list_ports, "comports", lambda: ports)
    with make_arm(None, usb_vid="0403", usb_pid=0x6014) as arm:
        assert arm.link.device == bus.port
        arm.read()
    with pytest.raises(dserial.PortMissingError, match=r"no USB 0403:6015 is connected.*USB 0403:6014 serial FT1ABC"):
        make_arm(None, usb_vid=0x0403, usb_pid=0x6015).open()
    ports.append(port("/dev/ttyUSB9", 0x0403, 0x6014, "FT9XYZ"))
    with pytest.raises(DriverError, match="2 devices match.*set usb_serial"):
        make_arm(None, usb_vid=0x0403, usb_pid=0x6014).open()
    with make_arm(None, usb_vid=0x0403, usb_pid=0x6014, usb_serial="FT1ABC") as arm:
        arm.read()


# -- limits -------------------------------------------------------------------------------

def test_commands_never_leave_the_limits(bus, arm):
    rng = np.random.default_rng(0)
    low, high = np.array(LIMITS).T
    for _ in range(40):
        arm.write(Command(rng.uniform(-10, 10, 4)))
    arm.write(Command(high + 1e-7))
    arm.write(Command(low - 1e-7))
    bus.inject(drop=2, corrupt=2)               # faults change nothing about what is sent
    arm.read()
    with pytest.raises(DriverError, match="not finite"):
        arm.write(Command(np.array([0.0, np.nan, 0.0, 0.0])))
    with pytest.raises(DriverError, match="shape"):
        arm.write(Command(np.zeros(3)))
    goals = bus.goals()
    assert len(goals) == 4 * (1 + 42)                # bring-up goals + every accepted write
    by_joint = {i: [g for j, g in goals if j == i] for i in IDS}
    for k, i in enumerate(IDS):
        q = joint_angles(arm, k, by_joint[i])
        assert np.all(q >= LIMITS[k][0] - 1e-9) and np.all(q <= LIMITS[k][1] + 1e-9), NAMES[k]
        assert max(by_joint[i]) == arm.tick_high[k] and min(by_joint[i]) == arm.tick_low[k]
    assert arm.health().details["clamped_commands"] >= 40


def test_signs_and_offsets_convert_both_ways(bus):
    arm = make_arm(bus.port, signs=[1, -1, 1, -1], offsets=[0.0, 0.1, 0.0, -0.2])
    with arm:
        q = arm.read().values["joint_position"]
        np.testing.assert_allclose(q, [0.0, 0.1, math.pi / 4, -0.2], atol=1e-6)
        target = np.array([0.3, 0.5, 0.0, -0.4])
        arm.write(Command(target))
        assert wait_until(lambda: np.allclose(arm.read().values["joint_position"], target, atol=2e-3))
        for k, i in enumerate(IDS):
            q = joint_angles(arm, k, [g for j, g in bus.goals() if j == i])
            assert np.all(q >= LIMITS[k][0] - 1e-9) and np.all(q <= LIMITS[k][1] + 1e-9)


def test_safety_layer_over_the_arm(bus, arm):
    safe = SafetyLayer(arm)
    safe.open()                                  # already open underneath: a no-op there
    safe.write(Command(np.array([1.5, 1.2, 2.0, 0.5])))
    step = np.abs(arm.ticks_to_rad(np.array([g for _, g in bus.goals()[-4:]], np.float64))
                  - np.array([0, 0, math.pi / 4, 0]))
    assert np.all(step <= 0.2 + 2e-3)            # max_delta from the measured pose


def test_bad_configs_fail_clearly():
    with pytest.raises(DriverError, match="position_limits is required"):
        DynamixelArm(ids=[1], port="/dev/null")
    with pytest.raises(DriverError, match=r"outside the servo's single turn"):
        DynamixelArm(ids=[1], port="/dev/null", position_limits=[-4.0, 1.0])
    with pytest.raises(DriverError, match="one value per joint"):
        DynamixelArm(ids=[1, 2], port="/dev/null", position_limits=[-1, 1], velocity_limit=[1, 2, 3])
    with pytest.raises(DriverError, match="distinct servo ids"):
        DynamixelArm(ids=[1, 1], port="/dev/null", position_limits=[-1, 1])
    with pytest.raises(DriverError, match="port .* or usb_vid"):
        DynamixelArm(ids=[1], position_limits=[-1, 1])


# -- safe modes and lifecycle -------------------------------------------------------------

def test_safe_modes(bus, arm):
    arm.safe_mode("damping", "test")
    assert arm.health().mode == "damping" and "test" in arm.health().message
    assert not any(s["torque"] for s in bus.state()["servos"].values())
    n_goals = len(bus.goals())
    arm.write(Command(np.zeros(4)))
    assert len(bus.goals()) == n_goals and arm.health().details["ignored_commands"] == 1
    bus.move(1, 2048 + 256)                      # a hand moves the limp joint by pi/8
    arm.resume()
    servos = bus.state()["servos"]
    assert all(s["torque"] for s in servos.values()) and servos["1"]["goal"] == 2048 + 256
    arm.safe_mode("hold")
    bus.move(2, 2048 + 100)                      # while holding, the goal was taken before
    assert bus.state()["servos"]["2"]["goal"] == 2048
    arm.write(Command(np.ones(4) * 0.3))
    assert arm.health().details["ignored_commands"] == 2
    arm.resume()
    arm.write(Command(np.ones(4) * 0.3))
    assert bus.goals()[-4:] == [(i, int(arm.rad_to_ticks(np.full(4, 0.3))[k])) for k, i in enumerate(IDS)]
    arm.safe_mode("damping")
    arm.safe_mode("hold")                        # hold from damping switches torque back on
    assert all(s["torque"] for s in bus.state()["servos"].values())
    with pytest.raises(DriverError, match="unknown safe mode"):
        arm.safe_mode("off")


def test_close_and_reopen(bus):
    arm = make_arm(bus.port)
    arm.open()
    arm.close()
    assert not any(s["torque"] for s in bus.state()["servos"].values())
    assert arm.health().mode == "closed" and not arm.health().ok
    with pytest.raises(DriverError, match="closed driver; call open"):
        arm.read()
    arm.close()                                  # idempotent
    arm.open()
    assert all(s["torque"] for s in bus.state()["servos"].values())
    arm.read()
    arm.close()


def test_hardware_alert_is_reported(bus, arm):
    bus.set_register(3, int(dxl.XAddr.HARDWARE_ERROR_STATUS), 0x20)
    arm.read()                                   # an alert does not stop reading
    health = arm.health()
    assert not health.ok and "3 (elbow): overload" in health.message
    bus.set_register(3, int(dxl.XAddr.HARDWARE_ERROR_STATUS), 0)
    arm.read()
    assert arm.health().ok


def test_registry_and_example_config():
    from daydream.config import load_config
    config = load_config("configs/dynamixel_arm.yaml")
    assert config.robot.driver == "dynamixel_arm"
    driver = make_driver(config.robot.driver, config.robot.driver_args)
    assert isinstance(driver, DynamixelArm)
    assert driver.spec.actuator.size == 4 and driver.spec.control_rate_hz == config.robot.control_hz
    assert driver.serial_config.usb_vid == 0x0403


def test_replies_corrupted_every_time_fail_clearly(bus, arm):
    bus.inject(corrupt=1000)
    with pytest.raises(DriverError,
                       match=r"did not answer.*after 3 tries.*replies arrived corrupted: check the wiring"):
        arm.read()
    assert arm.link.counters["crc_errors"] >= 3
    bus.inject(corrupt=0)
    arm.read()
    assert arm.health().ok


# -- the emulator's servo model -----------------------------------------------------------

def test_servo_model_dynamics_and_access_rules():
    from daydream.drivers.dynamixel.bus_model import ERR_ACCESS, ERR_DATA_LIMIT, ServoModel, ticks_per_s
    servo = ServoModel(1, position=2048, tau_s=0.05)
    A = dxl.XAddr
    assert servo.write(int(A.TORQUE_ENABLE), b"\x01") == 0
    assert servo.write(int(A.MAX_POSITION_LIMIT), dxl.to_bytes(3000, 4)) == ERR_ACCESS   # EEPROM, torque on
    assert servo.write(int(A.PRESENT_POSITION), dxl.to_bytes(0, 4)) == ERR_ACCESS        # read-only
    assert servo.write(int(A.PROFILE_VELOCITY), dxl.to_bytes(100, 4)) == 0
    assert servo.write(int(A.GOAL_POSITION), dxl.to_bytes(4000, 4)) == 0
    servo.advance(0.1)
    vmax = ticks_per_s(100)
    assert servo.position == pytest.approx(2048 + vmax * 0.1)          # speed-capped
    servo.advance(10.0)
    assert servo.position == pytest.approx(4000, abs=1e-6)
    assert servo.write(int(A.TORQUE_ENABLE), b"\x00") == 0
    assert servo.write(int(A.MAX_POSITION_LIMIT), dxl.to_bytes(3000, 4)) == 0
    assert servo.write(int(A.GOAL_POSITION), dxl.to_bytes(3500, 4)) == ERR_DATA_LIMIT
    servo.advance(1.0)
    assert servo.position == pytest.approx(4000, abs=1e-6)             # limp: stays


def test_example_config_runs_the_robot_env_on_the_emulated_arm():
    """The example config is a config away from the robot env (and so the ROS graph): hold_pose on 4 servos."""
    import yaml

    from daydream.config import load_config
    from daydream.envs import make_env

    with EmulatedBus(ids=[1, 2, 3, 4]) as emulated:
        args = yaml.safe_dump({**load_config("dynamixel_arm").robot.driver_args, "port": emulated.port,
                               "usb_vid": None, "usb_pid": None}, default_flow_style=True).strip()
        config = load_config("dynamixel_arm", [f"robot.driver_args={args}", "env.time_limit=10"])
        env = make_env(config.env, seed=0, robot=config.robot)
        try:
            obs, _ = env.reset()
            assert set(obs) >= {"joint_position", "joint_velocity", "last_action"} and "imu_orientation" not in obs
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, info = env.step(np.full(4, 0.2, np.float32))
                total, done = total + reward, terminated or truncated
            assert 0 < total <= 10 and set(info["reward_terms"]) == {"pose", "speed"}
            arm = env.unwrapped.driver.driver  # under the safety layer
            limits = config.robot.driver_args["position_limits"]
            for k, i in enumerate([1, 2, 3, 4]):  # nothing outside the joint limits reached the bus
                q = joint_angles(arm, k, [g for j, g in emulated.goals() if j == i])
                assert np.all(q >= limits[k][0] - 1e-9) and np.all(q <= limits[k][1] + 1e-9)
        finally:
            env.close()
