"""Tests of the safety layer (`daydream.drivers.safety`) against a small fake simulator,
and, when `daydream.drivers.mujoco_a1` is present, the key branches on the MuJoCo A1."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from daydream.drivers.interface import (ActuatorSpec, Command, Driver, DriverError, DriverSpec, Health, SafeMode,
                                        SensorSample, SensorSpec, SimulatedDriver)
from daydream.drivers.safety import SafetyConfig, SafetyLayer, SimulatedSafetyLayer
from daydream.drivers.mujoco_a1 import MuJoCoA1Driver

LOW = (-1.0, -0.5, 0.0)
HIGH = (1.0, 0.5, 2.0)
MAX_RATE = (100.0, 100.0, 1.0)   # joint 2 is slow: 1 rad/s
RATE_HZ = 20.0


def fake_spec(safe_modes: tuple[SafeMode, ...] = ("damping", "hold"), sensors: bool = True) -> DriverSpec:
    return DriverSpec(
        name="fake", control_rate_hz=RATE_HZ,
        sensors=(SensorSpec("joint_position", (3,), "float64", "rad"),) if sensors else (),
        actuator=ActuatorSpec(("a", "b", "c"), "rad", LOW, HIGH, MAX_RATE, (10.0, 10.0, 10.0)),
        safe_modes=safe_modes)


class FakeDriver(Driver):
    """Records every command and safe-mode request; joints jump to the target on `advance`."""

    def __init__(self, spec: DriverSpec | None = None) -> None:
        self.spec = spec or fake_spec()
        self.t = 0.0
        self.q = np.array([0.1, 0.2, 0.3])
        self.qd = np.zeros(3)
        self.mode = "closed"
        self.target: np.ndarray | None = None
        self.received: list[np.ndarray] = []
        self.safe_requests: list[tuple[str, str]] = []
        self.resumes = 0
        self.ignored = 0
        self.opens = 0

    def open(self) -> None:
        self.mode = "active"
        self.opens += 1

    def close(self) -> None:
        self.mode = "closed"

    def now(self) -> float:
        return self.t

    def read(self) -> SensorSample:
        if self.mode == "closed":
            raise DriverError("fake is closed")
        return SensorSample(self.t, {"joint_position": self.q.copy()})

    def write(self, command: Command) -> None:
        if self.mode == "closed":
            raise DriverError("fake is closed")
        position = np.asarray(command.position, np.float64)
        assert np.all(np.isfinite(position)), "the safety layer forwarded a non-finite command"
        self.received.append(position.copy())
        if self.mode in ("damping", "hold"):
            self.ignored += 1
            return
        self.target = position

    def safe_mode(self, mode: SafeMode, reason: str = "") -> None:
        self.safe_requests.append((mode, reason))
        self.mode = mode

    def resume(self) -> None:
        self.resumes += 1
        self.mode = "active"

    def health(self) -> Health:
        return Health(ok=True, mode=self.mode, message="fake ok", details={"ignored": self.ignored})  # type: ignore[arg-type]


class FakeSim(FakeDriver, SimulatedDriver):
    def advance(self, seconds: float) -> None:
        self.t += seconds
        if self.mode == "active" and self.target is not None:
            self.qd = (self.target - self.q) / seconds if seconds > 0 else self.qd
            self.q = self.target.copy()
        elif self.mode == "damping":
            self.qd = self.qd * 0.5

    def reset(self, seed: int | None = None) -> None:
        self.t = 0.0
        self.q = np.array([-0.2, -0.1, 1.0])
        self.target = None

    def render(self) -> np.ndarray:
        return np.zeros((2, 2, 3), np.uint8)


def make(config: SafetyConfig | None = None, **kwargs) -> tuple[FakeSim, SafetyLayer]:
    fake = FakeSim()
    layer = SafetyLayer(fake, config or SafetyConfig(**kwargs))
    layer.open()
    return fake, layer


def step(layer: SafetyLayer, target, seconds: float = 1 / RATE_HZ) -> None:
    layer.write(Command(np.asarray(target, np.float64)))
    layer.advance(seconds)  # type: ignore[attr-defined]


LOOSE = dict(max_delta=100.0)  # rate limit out of the way (joint 2 still follows its 1 rad/s)


# -- config --------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("max_delta", 0.0), ("max_delta", -1.0), ("max_delta", float("nan")), ("max_delta", True),
    ("lowpass_alpha", 0.0), ("lowpass_alpha", 1.5), ("lowpass_alpha", "0.5"),
    ("watchdog_timeout_s", 0.0), ("watchdog_timeout_s", float("inf")),
    ("safe_mode", "off"), ("watchdog_auto_resume", "false"), ("watchdog_auto_resume", 1),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SafetyConfig(**{field: value})


def test_config_defaults_and_from_mapping():
    cfg = SafetyConfig()
    assert (cfg.max_delta, cfg.lowpass_alpha, cfg.watchdog_timeout_s, cfg.safe_mode, cfg.watchdog_auto_resume) == (
        0.2, 1.0, 0.5, "damping", True)
    assert SafetyConfig.from_mapping({"max_delta": 0.1, "safe_mode": "hold"}) == SafetyConfig(max_delta=0.1,
                                                                                              safe_mode="hold")
    with pytest.raises(ValueError, match="max_detla"):
        SafetyConfig.from_mapping({"max_detla": 0.1})


def test_layer_checks_the_driver_it_wraps():
    with pytest.raises(ValueError, match="safe_mode"):
        SafetyLayer(FakeSim(fake_spec(safe_modes=("damping",))), SafetyConfig(safe_mode="hold"))
    with pytest.raises(ValueError, match="joint_position"):
        SafetyLayer(FakeSim(fake_spec(sensors=False)))


def test_layer_is_simulated_exactly_when_the_driver_is():
    sim_layer = SafetyLayer(FakeSim())
    assert isinstance(sim_layer, SimulatedSafetyLayer) and isinstance(sim_layer, SimulatedDriver)
    hw_layer = SafetyLayer(FakeDriver())
    assert type(hw_layer) is SafetyLayer and not isinstance(hw_layer, SimulatedDriver)
    assert sim_layer.spec is sim_layer.driver.spec
    assert sim_layer.render().shape == (2, 2, 3)
    assert hw_layer.render() is None


# -- filtering -------------------------------------------------------------------------------

def test_clamp_to_joint_limits():
    fake, layer = make(**LOOSE)
    fake.q = np.array([0.9, 0.4, 1.5])
    layer.write(Command(np.array([5.0, -5.0, 1.5])))
    np.testing.assert_allclose(fake.received[-1], [1.0, -0.5, 1.5])
    assert layer.health().details["clamped"] == 1
    layer.write(Command(np.array([0.5, 0.0, 1.5])))
    assert layer.health().details["clamped"] == 1  # in range: not counted


def test_first_command_is_rate_limited_from_the_measured_position():
    fake, layer = make(max_delta=0.1)
    fake.q = np.array([0.3, -0.2, 1.0])
    layer.write(Command(np.array([1.0, -0.5, 1.0])))
    # joint 2's motor allows 1 rad/s * one nominal period (0.05 s) < max_delta
    np.testing.assert_allclose(fake.received[-1], [0.4, -0.3, 1.0])
    assert layer.health().details["rate_limited"] == 1


def test_rate_limit_per_step_and_by_motor_speed():
    fake, layer = make(max_delta=0.1)
    fake.q = np.zeros(3)
    goal = np.array([1.0, 0.5, 2.0])
    sent = []
    for _ in range(4):
        step(layer, goal)
        sent.append(fake.received[-1])
    np.testing.assert_allclose(sent[-1], [0.4, 0.4, 0.2])  # 0.1 rad per step; joint 2: 1 rad/s * 0.05 s
    assert np.all(np.abs(np.diff(sent, axis=0)) <= 0.1 + 1e-12)
    # A longer gap lets the slow joint move further, up to max_delta.
    fake2, layer2 = make(max_delta=0.3)
    fake2.q = np.zeros(3)
    step(layer2, goal, seconds=0.2)
    layer2.write(Command(goal))
    np.testing.assert_allclose(fake2.received[-1] - fake2.received[-2], [0.3, 0.2, 0.2])


def test_no_time_no_change():
    fake, layer = make(max_delta=0.1)
    fake.q = np.zeros(3)
    layer.write(Command(np.array([0.5, 0.5, 0.5])))
    first = fake.received[-1]
    layer.write(Command(np.array([0.5, 0.5, 0.5])))  # same driver time: the target may not move
    np.testing.assert_allclose(fake.received[-1], first)


def test_lowpass_filter():
    fake, layer = make(lowpass_alpha=0.5, **LOOSE)
    fake.q = np.array([0.0, 0.0, 1.0])
    x = np.array([0.8, 0.4, 1.0])
    expected = np.array([0.0, 0.0, 1.0])
    for _ in range(5):
        step(layer, x)
        expected = 0.5 * x + 0.5 * expected
        np.testing.assert_allclose(fake.received[-1], expected)
    assert layer.health().details["rate_limited"] == 0


def test_non_finite_commands_are_rejected_and_logged_once_per_burst(caplog):
    fake, layer = make(**LOOSE)
    step(layer, [0.5, 0.1, 0.3])
    good = fake.received[-1].copy()
    with caplog.at_level(logging.WARNING, logger="daydream.drivers.safety"):
        for bad in ([np.nan, 0.0, 0.0], [0.0, np.inf, 0.0], [0.0, 0.0, -np.inf]):
            n = len(fake.received)
            step(layer, bad)
            assert len(fake.received) == n + 1  # the previous target is sent again
            np.testing.assert_allclose(fake.received[-1], good)
        step(layer, [0.4, 0.1, 0.3])
        step(layer, [np.nan] * 3)
    warnings = [r for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(warnings) == 2
    assert layer.health().details["nan_rejected"] == 4
    assert all(np.all(np.isfinite(r)) for r in fake.received)


def test_non_finite_first_command_sends_nothing():
    fake, layer = make()
    layer.write(Command(np.array([np.nan, 0.0, 0.0])))
    assert fake.received == []


def test_wrong_shape_is_an_error():
    _, layer = make()
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        layer.write(Command(np.zeros(2)))


# -- watchdog --------------------------------------------------------------------------------

def test_watchdog_trips_after_timeout_and_not_before(caplog):
    fake, layer = make(watchdog_timeout_s=0.5)
    step(layer, [0.1, 0.2, 0.3], seconds=0.0)
    fake.t = 0.49
    assert layer.tick() == "active" and fake.safe_requests == []
    fake.t = 0.51
    with caplog.at_level(logging.WARNING, logger="daydream.drivers.safety"):
        assert layer.tick() == "damping"
        layer.tick()
        layer.advance(0.1)
    assert [m for m, _ in fake.safe_requests] == ["damping"]
    assert "watchdog" in fake.safe_requests[0][1]
    assert len([r for r in caplog.records if "switching to damping" in r.getMessage()]) == 1
    health = layer.health()
    assert health.mode == "damping" and health.details["watchdog_trips"] == 1


def test_watchdog_counts_from_open_and_is_fed_by_commands_not_nans():
    fake, layer = make(watchdog_timeout_s=0.5)
    for _ in range(40):  # 2 s of steady commands
        step(layer, [0.1, 0.2, 0.3])
    assert fake.safe_requests == []
    for _ in range(11):  # a policy that only emits NaN is a dead policy
        step(layer, [np.nan] * 3)
    assert [m for m, _ in fake.safe_requests] == ["damping"]
    fake2, layer2 = make(watchdog_timeout_s=0.5)
    layer2.advance(0.6)  # never commanded at all
    assert [m for m, _ in fake2.safe_requests] == ["damping"]


def test_watchdog_hold_mode_and_read_ticks():
    fake, layer = make(safe_mode="hold", watchdog_timeout_s=0.2)
    fake.t = 0.3
    layer.read()
    assert [m for m, _ in fake.safe_requests] == ["hold"]
    assert layer.health().mode == "hold"


def test_watchdog_auto_resume_starts_from_the_measured_position():
    fake, layer = make(max_delta=0.1, watchdog_timeout_s=0.5)
    fake.q = np.zeros(3)
    step(layer, [0.5, 0.5, 0.5])
    layer.advance(0.6)
    assert layer.tick() == "damping"
    fake.q = np.array([-0.5, -0.4, 1.5])  # the robot sagged while limp
    layer.write(Command(np.array([0.5, 0.5, 0.5])))
    assert fake.resumes == 1 and layer.tick() == "active"
    np.testing.assert_allclose(fake.received[-1], [-0.4, -0.3, 1.45])
    assert fake.target is not None  # the driver applied it (not ignored)


def test_watchdog_without_auto_resume_needs_resume():
    fake, layer = make(watchdog_timeout_s=0.5, watchdog_auto_resume=False, **LOOSE)
    step(layer, [0.1, 0.2, 0.3])
    layer.advance(0.6)
    n = len(fake.received)
    for _ in range(3):
        step(layer, [0.2, 0.2, 0.3])
    assert len(fake.received) == n and layer.tick() == "damping"
    assert layer.health().details["commands_ignored"] == 3
    assert layer.health().details["watchdog_trips"] == 1  # no re-trips while safe
    layer.resume()
    assert fake.resumes == 1
    step(layer, [0.2, 0.2, 0.3])
    assert len(fake.received) == n + 1 and layer.tick() == "active"


def test_requested_safe_mode_never_auto_resumes():
    fake, layer = make(**LOOSE)
    step(layer, [0.1, 0.2, 0.3])
    layer.safe_mode("hold", "sensor fault")
    assert fake.safe_requests == [("hold", "sensor fault")]
    step(layer, [0.2, 0.2, 0.3])
    assert fake.resumes == 0 and layer.health().mode == "hold"
    layer.resume()
    step(layer, [0.2, 0.2, 0.3])
    assert fake.resumes == 1 and layer.health().mode == "active"
    with pytest.raises(ValueError, match="no safe mode"):
        SafetyLayer(FakeSim(fake_spec(safe_modes=("damping",)))).safe_mode("hold")


# -- e-stop ----------------------------------------------------------------------------------

def test_estop_latches_until_cleared():
    fake, layer = make(max_delta=0.1, watchdog_timeout_s=0.5)
    fake.q = np.zeros(3)
    step(layer, [0.5, 0.5, 0.5])
    layer.estop("button")
    assert fake.safe_requests[-1][0] == "damping" and "button" in fake.safe_requests[-1][1]
    n = len(fake.received)
    for _ in range(30):  # 1.5 s of commands, past the watchdog timeout
        step(layer, [0.5, 0.5, 0.5])
    assert len(fake.received) == n
    health = layer.health()
    assert health.mode == "estop" and not health.ok and "button" in health.message
    assert health.details["estops"] == 1 and health.details["watchdog_trips"] == 0
    with pytest.raises(DriverError, match="clear_estop"):
        layer.resume()
    layer.estop("again")  # already latched: not a new e-stop
    assert layer.health().details["estops"] == 1
    layer.clear_estop()
    assert not layer.estopped and fake.resumes == 1
    fake.q = np.array([0.2, 0.0, 1.0])
    layer.write(Command(np.array([0.5, 0.5, 0.5])))
    np.testing.assert_allclose(fake.received[-1], [0.3, 0.1, 0.95])
    assert layer.health().mode == "active" and layer.health().ok


def test_estop_survives_close_and_reopen():
    fake, layer = make()
    layer.estop("fell over")
    layer.close()
    layer.open()
    assert fake.mode == "damping" and layer.health().mode == "estop"
    step(layer, [0.1, 0.2, 0.3])
    assert fake.received == []
    layer.clear_estop()
    step(layer, [0.1, 0.2, 0.3])
    assert len(fake.received) == 1


def test_estop_while_closed_applies_on_open():
    fake = FakeSim()
    layer = SafetyLayer(fake, SafetyConfig(safe_mode="hold"))
    layer.estop("before start")
    assert fake.safe_requests == []
    layer.open()
    assert fake.mode == "hold" and layer.health().mode == "estop"


# -- health, lifecycle, simulator forwarding ----------------------------------------------

def test_health_merges_driver_and_counters():
    fake, layer = make(**LOOSE)
    step(layer, [9.0, 0.0, 1.0])
    step(layer, [np.nan, 0.0, 1.0])
    health = layer.health()
    assert health.ok and health.mode == "active" and health.message == "fake ok"
    for key, value in {"clamped": 1, "rate_limited": 1, "nan_rejected": 1, "watchdog_trips": 0, "estops": 0,
                       "ignored": 0, "driver_mode": "active"}.items():
        assert health.details[key] == value, key


def test_close_and_reopen():
    fake, layer = make(max_delta=0.1, watchdog_timeout_s=0.5)
    step(layer, [0.5, 0.5, 0.5])
    layer.close()
    assert fake.mode == "closed" and layer.tick() == "closed"
    layer.safe_mode("damping", "while closed")  # nothing to do: closing left the actuators safe
    assert fake.safe_requests == [] and layer.tick() == "closed"
    with pytest.raises(DriverError, match="open"):
        layer.write(Command(np.zeros(3)))
    fake.t += 5.0          # time passes while closed: no watchdog trip on reopen
    fake.q = np.array([-0.5, -0.5, 0.5])
    layer.open()
    assert fake.opens == 2 and layer.tick() == "active"
    layer.write(Command(np.array([0.5, 0.5, 0.5])))
    np.testing.assert_allclose(fake.received[-1], [-0.4, -0.4, 0.5])  # from the measured pose
    assert fake.safe_requests == []


def test_sim_reset_restarts_from_the_new_pose_and_clock():
    fake, layer = make(max_delta=0.1, watchdog_timeout_s=0.5)
    fake.t = 3.0
    step(layer, [0.5, 0.5, 0.5])
    layer.reset(seed=1)  # type: ignore[attr-defined]
    assert fake.t == 0.0
    layer.write(Command(np.array([0.5, 0.5, 0.5])))
    np.testing.assert_allclose(fake.received[-1], [-0.1, 0.0, 0.95])
    layer.advance(0.3)  # type: ignore[attr-defined]
    assert layer.tick() == "active"


def test_sim_reset_keeps_a_safe_mode():
    fake, layer = make()
    layer.estop("test")
    fake.mode = "active"  # a simulator whose reset forgets its mode
    layer.reset()  # type: ignore[attr-defined]
    assert fake.mode == "damping"


def test_measured_position_must_be_finite():
    fake, layer = make()
    fake.q = np.array([np.nan, 0.0, 0.0])
    with pytest.raises(DriverError, match="joint_position"):
        layer.write(Command(np.zeros(3)))
    assert fake.mode == "damping" and fake.received == []


# -- the MuJoCo A1 ---------------------------------------------------------------------------

@pytest.fixture
def a1():
    driver = MuJoCoA1Driver()
    layer = SafetyLayer(driver, SafetyConfig(max_delta=10.0, watchdog_timeout_s=0.2))
    layer.open()
    if isinstance(layer, SimulatedSafetyLayer):
        layer.reset(0)
    yield driver, layer
    layer.close()


def test_a1_clamp_keeps_targets_inside_joint_limits(a1):
    driver, layer = a1
    assert isinstance(layer, SimulatedSafetyLayer)
    act = driver.spec.actuator
    period = 1.0 / driver.spec.control_rate_hz
    for _ in range(20):
        layer.write(Command(act.high_array() + 1.0))
        layer.advance(period)
    assert layer.health().details["clamped"] == 20
    q = np.asarray(layer.read().values["joint_position"], np.float64)
    assert np.all(q <= act.high_array() + 0.1), "joints went past their upper limits"


def test_a1_watchdog_damps_the_sim(a1):
    driver, layer = a1
    act = driver.spec.actuator
    period = 1.0 / driver.spec.control_rate_hz
    rng = np.random.default_rng(0)
    mid = (act.low_array() + act.high_array()) / 2
    span = (act.high_array() - act.low_array()) / 2
    peak = 0.0
    for _ in range(10):  # shake the legs so there is velocity to damp
        layer.write(Command(mid + 0.8 * span * rng.uniform(-1, 1, act.size)))
        layer.advance(period)
        velocity = layer.read().values.get("joint_velocity")
        assert velocity is not None, "the A1 driver should report joint_velocity"
        peak = max(peak, float(np.abs(np.asarray(velocity, np.float64)).max()))
    assert layer.tick() == "active"
    for _ in range(int(1.0 / period)):  # bounded: a watchdog that never trips must fail, not hang
        if layer.tick() != "active":
            break
        layer.advance(period)
    assert layer.health().mode == "damping" and layer.health().details["watchdog_trips"] == 1
    assert peak > 2.0, f"the shaking should move the joints (peak {peak:.2f} rad/s)"
    for _ in range(int(2.0 / period)):
        layer.advance(period)
    later = np.abs(np.asarray(layer.read().values["joint_velocity"], np.float64)).max()
    assert later < min(1.0, 0.1 * peak), f"joints still at {later:.2f} rad/s (peak {peak:.2f}) after 2 s of damping"


def test_a1_estop(a1):
    driver, layer = a1
    period = 1.0 / driver.spec.control_rate_hz
    layer.estop("test")
    assert layer.health().mode == "estop"
    q0 = np.asarray(layer.read().values["joint_position"], np.float64)
    for _ in range(5):
        layer.write(Command(driver.spec.actuator.high_array()))
        layer.advance(period)
    assert layer.health().mode == "estop"
    layer.clear_estop()
    layer.write(Command(q0))
    layer.advance(period)
    assert layer.health().mode == "active"
