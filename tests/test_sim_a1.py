"""The simulated Unitree A1 (`sim/a1/*.xml` and `daydream.drivers.mujoco_a1`): the model's
numbers, standing and lying starts, the driver contract a new user's driver faces, errors,
safe modes and the camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mujoco  # noqa: E402

from daydream.drivers import Command, DriverError, make_driver  # noqa: E402
from daydream.drivers.mujoco_a1 import JOINT_NAMES, STANDING_POSE, MuJoCoA1Driver  # noqa: E402

RANGES = {"hip": (-0.80, 0.80), "thigh": (-1.05, 4.19), "calf": (-2.70, -0.92)}


def up_z(quat_wxyz: np.ndarray) -> float:
    """World-z component of the trunk's up axis."""
    w, x, y, _ = (float(v) for v in quat_wxyz)
    return 1.0 - 2.0 * (x * x + y * y)


@pytest.fixture
def a1():
    driver = MuJoCoA1Driver()
    driver.open()
    yield driver
    driver.close()


def stand(driver: MuJoCoA1Driver, seconds: float) -> None:
    period = 1.0 / driver.spec.control_rate_hz
    for _ in range(int(round(seconds / period))):
        driver.write(Command(STANDING_POSE.copy(), stamp=driver.now()))
        driver.advance(period)


# -- (a) the model -----------------------------------------------------------------------

def test_model_numbers(a1):
    model = a1.model
    for name in JOINT_NAMES:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert jid >= 0, name
        assert bool(model.jnt_limited[jid]), f"{name} is not limited"
        np.testing.assert_allclose(model.jnt_range[jid], RANGES[name.split("_")[1]], err_msg=name)
        aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
        assert aid >= 0 and model.actuator_trnid[aid, 0] == jid, f"no motor on {name}"
        np.testing.assert_allclose(model.actuator_forcerange[aid], (-33.5, 33.5), err_msg=name)
        np.testing.assert_allclose(model.actuator_ctrlrange[aid], (-33.5, 33.5), err_msg=name)
    assert model.opt.timestep == pytest.approx(0.001)
    assert model.body_mass.sum() == pytest.approx(12.0, abs=1.5)
    assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0
    spec = a1.spec
    assert spec.actuator.joint_names == JOINT_NAMES
    np.testing.assert_allclose(spec.actuator.low, [RANGES[n.split("_")[1]][0] for n in JOINT_NAMES])
    np.testing.assert_allclose(spec.actuator.high, [RANGES[n.split("_")[1]][1] for n in JOINT_NAMES])
    assert spec.actuator.torque_limit == (33.5,) * 12 and spec.actuator.max_rate == (21.0,) * 12
    assert spec.control_rate_hz == 20


# -- (b, c) start poses --------------------------------------------------------------------

def test_stands_for_ten_seconds(a1):
    period = 1.0 / a1.spec.control_rate_hz
    for _ in range(int(10.0 / period)):
        a1.write(Command(STANDING_POSE.copy()))
        a1.advance(period)
        height = float(a1.data.qpos[2])
        assert 0.22 <= height <= 0.36, f"trunk height {height:.3f} m at t={a1.now():.2f} s"
        assert up_z(a1.read().values["imu_orientation"]) > 0.9
    assert a1.now() == pytest.approx(10.0)
    assert a1.read().values["foot_contact"].all()
    assert a1.health().ok


def test_lying_on_back_start():
    driver = MuJoCoA1Driver(start="lying_on_back")
    with driver:
        assert up_z(driver.read().values["imu_orientation"]) < -0.5
        driver.advance(0.5)
        assert up_z(driver.read().values["imu_orientation"]) < -0.5
        assert driver.data.qpos[2] < 0.2


def test_random_start_follows_the_seed():
    poses = []
    for _ in range(2):
        with MuJoCoA1Driver(start="random", seed=3) as driver:
            poses.append(driver.data.qpos.copy())
            driver.reset(4)
            poses.append(driver.data.qpos.copy())
    np.testing.assert_array_equal(poses[0], poses[2])
    assert not np.allclose(poses[0], poses[1])


# -- (d) the contract every driver meets ---------------------------------------------------

def check_sample(driver, sample) -> None:
    for s in driver.spec.sensors:
        assert s.name in sample.values, f"declared sensor {s.name} missing"
        value = sample.values[s.name]
        assert value.shape == s.shape, f"{s.name}: shape {value.shape}, declared {s.shape}"
        assert value.dtype == np.dtype(s.dtype), f"{s.name}: dtype {value.dtype}, declared {s.dtype}"
        if s.dtype != "bool":
            assert np.all(np.isfinite(value.astype(np.float64))), s.name
        if s.low is not None:
            assert np.all(value.astype(np.float64) >= s.low), f"{s.name} below {s.low}: {value.min()}"
        if s.high is not None:
            assert np.all(value.astype(np.float64) <= s.high), f"{s.name} above {s.high}: {value.max()}"
    assert set(sample.values) == {s.name for s in driver.spec.sensors}


def test_driver_contract():
    driver = make_driver("mujoco_a1", {"start": "random", "seed": 1})
    assert isinstance(driver, MuJoCoA1Driver)
    assert driver.health().mode == "closed"
    with pytest.raises(DriverError, match="open"):
        driver.read()
    driver.open()
    assert driver.health().mode == "active"
    period = 1.0 / driver.spec.control_rate_hz
    rng = np.random.default_rng(0)
    low, high = driver.spec.actuator.low_array(), driver.spec.actuator.high_array()
    last = driver.read().stamp
    check_sample(driver, driver.read())
    for _ in range(20):  # flail so the readings move around
        driver.write(Command(rng.uniform(low, high), stamp=driver.now()))
        driver.advance(period)
        sample = driver.read()
        check_sample(driver, sample)
        assert sample.stamp > last and sample.stamp == driver.now()
        last = sample.stamp
    assert driver.health().details["physics_steps"] == 20 * 50
    driver.close()
    driver.close()  # idempotent
    assert driver.health().mode == "closed" and driver.model is None
    driver.open()
    sample = driver.read()
    check_sample(driver, sample)
    assert sample.stamp >= last, "the clock went backwards across close()/open()"
    driver.advance(period)
    assert driver.read().stamp > sample.stamp
    driver.close()


def test_standing_readings_make_sense(a1):
    stand(a1, 1.0)
    values = a1.read().values
    accel = values["imu_linear_acceleration"]
    assert accel[2] == pytest.approx(9.81, abs=0.3), "an accelerometer at rest reads +g along up"
    assert np.abs(values["base_velocity"]).max() < 0.05
    assert np.abs(values["imu_angular_velocity"]).max() < 0.05
    torque = values["joint_torque"]
    assert np.abs(torque).max() > 0.5, "standing needs torque"
    np.testing.assert_allclose(values["joint_position"], STANDING_POSE, atol=0.1)


# -- (e) errors ------------------------------------------------------------------------------

def test_bad_model_path():
    with pytest.raises(DriverError, match="no_such_robot.xml"):
        MuJoCoA1Driver(model="sim/no_such_robot.xml")


def test_model_without_the_joints(tmp_path: Path):
    path = tmp_path / "box.xml"
    path.write_text("""<mujoco><worldbody><body name="trunk"><freejoint name="root"/>
        <geom type="box" size="0.1 0.1 0.1"/></body></worldbody></mujoco>""")
    with pytest.raises(DriverError, match="FR_hip"):
        MuJoCoA1Driver(model=str(path))


def test_bad_commands(a1):
    with pytest.raises(DriverError, match="shape"):
        a1.write(Command(np.zeros(11)))
    bad = STANDING_POSE.copy()
    bad[4] = np.nan
    with pytest.raises(DriverError, match="FL_thigh"):
        a1.write(Command(bad))
    bad[4] = np.inf
    with pytest.raises(DriverError, match="finite"):
        a1.write(Command(bad))
    # Out of range: applied clipped to the joint range, and counted.
    a1.write(Command(a1.spec.actuator.high_array() + 1.0))
    assert a1.health().details["clipped_commands"] == 1
    np.testing.assert_array_equal(a1._target, a1.spec.actuator.high_array())


# -- (f) safe modes ----------------------------------------------------------------------------

def test_damping_stops_the_joints_and_ignores_writes(a1):
    period = 1.0 / a1.spec.control_rate_hz
    rng = np.random.default_rng(0)
    low, high = a1.spec.actuator.low_array(), a1.spec.actuator.high_array()
    mid, span = (low + high) / 2, (high - low) / 2
    for _ in range(10):
        a1.write(Command(mid + 0.8 * span * rng.uniform(-1, 1, 12)))
        a1.advance(period)
    moving = np.abs(a1.read().values["joint_velocity"]).max()
    assert moving > 1.0
    a1.safe_mode("damping", "test")
    health = a1.health()
    assert health.mode == "damping" and "test" in health.message
    for _ in range(40):
        a1.write(Command(high.copy()))
        a1.advance(period)
    assert a1.health().details["ignored_commands"] == 40
    assert np.abs(a1.read().values["joint_velocity"]).max() < 0.5
    a1.resume()
    assert a1.health().mode == "active"
    a1.write(Command(STANDING_POSE.copy()))
    a1.advance(1.0)
    np.testing.assert_allclose(a1.read().values["joint_position"], STANDING_POSE, atol=0.25)


def test_hold_keeps_the_joints_and_resume_makes_writes_work(a1):
    stand(a1, 0.5)
    before = a1.read().values["joint_position"].astype(np.float64)
    a1.safe_mode("hold")
    target = STANDING_POSE.copy()
    target[1::3] += 0.5  # thighs further back
    for _ in range(20):
        a1.write(Command(target))
        a1.advance(0.05)
    held = a1.read().values["joint_position"].astype(np.float64)
    # PD toward the held angles sags a little more under the body's weight (load / kp)
    np.testing.assert_allclose(held, before, atol=0.1)
    assert a1.health().details["ignored_commands"] == 20
    a1.resume()
    a1.advance(0.2)  # resumed but no write yet: stays put
    np.testing.assert_allclose(a1.read().values["joint_position"], held, atol=0.05)
    a1.write(Command(target))
    a1.advance(1.0)
    moved = a1.read().values["joint_position"].astype(np.float64)
    assert np.all(moved[1::3] > before[1::3] + 0.3), "writes after resume() had no effect"


# -- (g) camera --------------------------------------------------------------------------------

def test_camera_image():
    with MuJoCoA1Driver(camera=True) as driver:
        spec = driver.spec.sensor("image")
        assert spec.shape == (64, 64, 3) and spec.dtype == "uint8"
        image = driver.read().values["image"]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5, "the image is (nearly) constant"
        frame = driver.render(size=(120, 160))
        assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
