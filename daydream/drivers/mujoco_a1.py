"""`MuJoCoA1Driver`: a simulated Unitree A1 behind the driver interface.

This module owns the simulated robot's side of the driver contract: loading and checking
the MJCF (`sim/a1/scene.xml` by default), the joint PD loop at the physics rate (the
motors are torque motors; PD gains live here, as on the real robot's motor boards), the
safe modes, the start poses (standing, on its back as in DayDreamer, or random), the
sensor readings (joint state and torque, IMU, foot contacts, body velocity, optional
camera image) and the offscreen renderer. The model itself lives in `sim/a1/`.

Conventions: joints in the order FR, FL, RR, RL, each hip (about x), thigh (about y),
calf (about y); quaternions w, x, y, z; IMU and body velocity in the trunk (IMU site)
frame. The clock is simulation time and never goes backwards, not even across `reset()`
or `close()`/`open()`, so watchdogs and stale-data checks above the driver keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from daydream.drivers.interface import (SAFE_MODES, ActuatorSpec, Command, DriverError, DriverSpec, Health, SafeMode,
                                        SensorSample, SensorSpec, SimulatedDriver)
from daydream.drivers.modes import DriverModes

LEGS = ("FR", "FL", "RR", "RL")
JOINT_NAMES = tuple(f"{leg}_{part}" for leg in LEGS for part in ("hip", "thigh", "calf"))
STANDING_POSE = np.array([0.0, 0.9, -1.8] * 4)  # a1.md / DayDreamer's initial pose
STARTS = ("standing", "lying_on_back", "random")
REPO_ROOT = Path(__file__).resolve().parents[2]

# mjtWarning index of "bad qacc" (the simulation diverged and MuJoCo reset mjData).
_WARN_BADQACC = 6


def _import_mujoco() -> Any:
    try:
        import mujoco
    except ImportError as exc:  # keep the rest of daydream importable without MuJoCo
        raise DriverError(f"the mujoco_a1 driver needs the `mujoco` package ({exc}); install it with "
                          "`pip install mujoco`") from exc
    return mujoco


def resolve_model_path(model: str | Path) -> Path:
    """`model` as an absolute path; relative paths are taken from the repository root."""
    path = Path(model).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


class MuJoCoA1Driver(SimulatedDriver):
    """Simulated A1: position targets tracked by PD at `physics_hz`; see the module docstring.

    Keyword arguments (all from `robot.driver_args` in the config):
      model: MJCF scene path (relative to the repo root) with the 12 joints, a motor per
        joint, foot sites `<leg>_foot`, a site `imu` and (for images) a camera `track`.
      physics_hz: physics rate; also the PD rate.  control_hz: the rate commands come at.
      kp, kd: PD gains (N*m/rad, N*m*s/rad).  damping_kd: gain of the `damping` safe mode,
        tau = -damping_kd * qdot (3 N*m*s/rad: limp joints come to rest within about a second).
      start: "standing", "lying_on_back" (DayDreamer's start) or "random".
      camera: add the `image` sensor (rendered from camera `track`).  image_size: (h, w).
      seed: seeds the random start.  torque_limit: motor torque limit (N*m).
      max_joint_speed: the largest target change per second declared to the safety layer.
    """

    def __init__(self, model: str = "sim/a1/scene.xml", physics_hz: float = 1000, control_hz: float = 20,
                 kp: float = 100.0, kd: float = 2.0, start: str = "standing", camera: bool = False,
                 image_size: tuple[int, int] | list[int] = (64, 64), seed: int = 0, torque_limit: float = 33.5,
                 max_joint_speed: float = 21.0, damping_kd: float = 3.0) -> None:
        for name, value in (("physics_hz", physics_hz), ("control_hz", control_hz), ("torque_limit", torque_limit),
                            ("max_joint_speed", max_joint_speed)):
            if not value > 0:
                raise DriverError(f"mujoco_a1: {name} must be positive, got {value!r}")
        for name, value in (("kp", kp), ("kd", kd), ("damping_kd", damping_kd)):
            if not value >= 0:
                raise DriverError(f"mujoco_a1: {name} must be >= 0, got {value!r}")
        if start not in STARTS:
            raise DriverError(f"mujoco_a1: start must be one of {STARTS}, got {start!r}")
        size = tuple(int(v) for v in image_size)
        if len(size) != 2 or min(size) <= 0:
            raise DriverError(f"mujoco_a1: image_size must be (height, width), got {image_size!r}")
        self.model_path = resolve_model_path(model)
        self.physics_hz = float(physics_hz)
        self.control_hz = float(control_hz)
        self.kp, self.kd, self.damping_kd = float(kp), float(kd), float(damping_kd)
        self.start = start
        self.camera = bool(camera)
        self.image_size = size
        self.seed = int(seed)
        self.torque_limit = float(torque_limit)
        self.max_joint_speed = float(max_joint_speed)
        self._mujoco = _import_mujoco()

        # Load once here so `spec` (joint ranges) exists before `open()`: envs read it when built.
        probe = self._load_model()
        self._low = probe.jnt_range[self._joint_ids, 0].copy()
        self._high = probe.jnt_range[self._joint_ids, 1].copy()
        self.spec = self._make_spec()
        del probe

        self.model: Any = None
        self.data: Any = None
        self._renderers: dict[tuple[int, int], Any] = {}
        self._rng = np.random.default_rng(self.seed)
        self._clock = 0.0  # sim time carried over close()/open() and reset()
        self._target = STANDING_POSE.copy()
        self._hold = STANDING_POSE.copy()
        self._tau = np.zeros(12)
        self._diverged = False
        self._counters = {"physics_steps": 0, "writes": 0, "clipped_commands": 0, "ignored_commands": 0,
                          "safe_mode_entries": 0, "resets": 0, "physics_warnings": 0}
        self._modes = DriverModes("mujoco_a1", self._counters)

    # -- model loading and checking -------------------------------------------------------

    def _load_model(self) -> Any:
        mujoco = self._mujoco
        path = self.model_path
        if not path.is_file():
            raise DriverError(f"mujoco_a1: model file {path} does not exist; set robot.driver_args.model to an MJCF "
                              f"file (relative paths are resolved against {REPO_ROOT})")
        try:
            model = mujoco.MjModel.from_xml_path(str(path))
        except ValueError as exc:
            raise DriverError(f"mujoco_a1: MuJoCo cannot load {path}: {exc}; fix the MJCF or point "
                              "robot.driver_args.model at a valid one") from exc
        self._index_model(model)
        model.opt.timestep = 1.0 / self.physics_hz
        return model

    def _index_model(self, model: Any) -> None:
        """Find the joints, motors, sites and camera the driver needs; say everything missing at once."""
        mujoco = self._mujoco
        obj = mujoco.mjtObj
        missing: list[str] = []
        joint_ids = []
        for name in JOINT_NAMES:
            jid = mujoco.mj_name2id(model, obj.mjOBJ_JOINT, name)
            if jid < 0:
                missing.append(f"joint '{name}'")
            elif int(model.jnt_type[jid]) != int(mujoco.mjtJoint.mjJNT_HINGE):
                missing.append(f"joint '{name}' as a hinge")
            joint_ids.append(jid)
        free = [j for j in range(model.njnt) if int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_FREE)]
        if not free:
            missing.append("a free joint on the trunk (e.g. <freejoint name='root'/>)")
        foot_sites = [mujoco.mj_name2id(model, obj.mjOBJ_SITE, f"{leg}_foot") for leg in LEGS]
        missing += [f"site '{leg}_foot'" for leg, sid in zip(LEGS, foot_sites) if sid < 0]
        imu = mujoco.mj_name2id(model, obj.mjOBJ_SITE, "imu")
        if imu < 0:
            missing.append("site 'imu' in the trunk")
        if self.camera and mujoco.mj_name2id(model, obj.mjOBJ_CAMERA, "track") < 0:
            missing.append("camera 'track' (needed because camera=True)")
        actuators = []
        for name, jid in zip(JOINT_NAMES, joint_ids):
            if jid < 0:
                continue
            found = [a for a in range(model.nu) if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
                     and model.actuator_trnid[a, 0] == jid]
            if not found:
                missing.append(f"a <motor> on joint '{name}'")
            actuators.append(found[0] if found else -1)
        if missing:
            raise DriverError(f"mujoco_a1: model {self.model_path} lacks " + ", ".join(missing)
                              + f"; the driver needs the joints {list(JOINT_NAMES)} (hinges, each with a torque "
                              "<motor>), a free joint, foot sites <leg>_foot and a site 'imu' (see sim/a1/a1.xml)")
        self._joint_ids = np.array(joint_ids)
        self._qadr = model.jnt_qposadr[self._joint_ids].copy()
        self._dadr = model.jnt_dofadr[self._joint_ids].copy()
        self._act = np.array(actuators)
        self._free_qadr = int(model.jnt_qposadr[free[0]])
        self._imu = imu
        self._foot_sites = np.array(foot_sites)
        self._foot_bodies = model.site_bodyid[self._foot_sites].copy()
        # Contacts count as foot contacts within this distance of the foot site centre.
        self._foot_reach = model.site_size[self._foot_sites, 0] + 0.01
        # Which bodies are the robot: the subtree of the free joint's body (for the drop height).
        root = model.jnt_bodyid[free[0]]
        self._robot_geoms = np.array([g for g in range(model.ngeom)
                                      if self._in_subtree(model, model.geom_bodyid[g], root)])

    @staticmethod
    def _in_subtree(model: Any, body: int, root: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = model.body_parentid[body]
        return root == 0

    def _make_spec(self) -> DriverSpec:
        n = len(JOINT_NAMES)
        tl = self.torque_limit
        sensors = [
            SensorSpec("joint_position", (n,), "float32", "rad", float(self._low.min()), float(self._high.max())),
            SensorSpec("joint_velocity", (n,), "float32", "rad/s"),
            SensorSpec("joint_torque", (n,), "float32", "N*m", -tl, tl),
            SensorSpec("imu_orientation", (4,), "float32", "quat_wxyz", -1.0, 1.0),
            SensorSpec("imu_angular_velocity", (3,), "float32", "rad/s"),
            SensorSpec("imu_linear_acceleration", (3,), "float32", "m/s^2"),
            SensorSpec("foot_contact", (4,), "bool", "bool", 0.0, 1.0),
            SensorSpec("base_velocity", (3,), "float32", "m/s"),
        ]
        if self.camera:
            sensors.append(SensorSpec("image", (*self.image_size, 3), "uint8", "rgb", 0.0, 255.0))
        actuator = ActuatorSpec(joint_names=JOINT_NAMES, unit="rad", low=tuple(map(float, self._low)),
                                high=tuple(map(float, self._high)), max_rate=(self.max_joint_speed,) * n,
                                torque_limit=(tl,) * n)
        return DriverSpec(name="mujoco_a1", control_rate_hz=self.control_hz, sensors=tuple(sensors),
                          actuator=actuator, safe_modes=SAFE_MODES)

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        if not self._modes.closed:
            return
        self.model = self._load_model()
        self.data = self._mujoco.MjData(self.model)
        self.data.time = self._clock
        self._modes.activate()
        self.reset(None)
        if self.camera:
            self._renderer(self.image_size)  # fail at open, not at the first read, if there is no GL

    def close(self) -> None:
        if self._modes.closed:
            return
        self.safe_mode("damping", "closing")
        self._clock = float(self.data.time)
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self.model = self.data = None
        self._modes.close()

    def _require_open(self, what: str) -> None:
        if self._modes.closed:
            raise DriverError(f"mujoco_a1: {what} on a closed driver; call open() first")

    def now(self) -> float:
        return self._clock if self.data is None else float(self.data.time)

    # -- start poses ----------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Put the robot in its start pose (see `start`). The mode (active or safe) is kept."""
        self._require_open("reset()")
        mujoco, model, data = self._mujoco, self.model, self.data
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        clock = float(data.time)
        mujoco.mj_resetData(model, data)
        data.time = clock
        joints = STANDING_POSE.copy()
        quat = np.array([1.0, 0.0, 0.0, 0.0])
        if self.start == "lying_on_back":
            quat = np.array([0.0, 1.0, 0.0, 0.0])  # half a turn about the forward axis
        elif self.start == "random":
            quat = self._rng.normal(size=4)  # normalised Gaussian: uniform over rotations
            quat /= np.linalg.norm(quat)
            margin = 0.1 * (self._high - self._low)
            joints = self._rng.uniform(self._low + margin, self._high - margin)
        a = self._free_qadr
        data.qpos[a:a + 3] = (0.0, 0.0, 1.0)
        data.qpos[a + 3:a + 7] = quat
        data.qpos[self._qadr] = joints
        mujoco.mj_kinematics(model, data)
        # Drop it so its lowest point is 2 mm above the floor (z = 0): feet touch at once, nothing penetrates.
        data.qpos[a + 2] += 0.002 - self._lowest_point()
        self._target = joints.copy()
        self._hold = joints.copy()
        self._counters["resets"] += 1
        self._diverged = False
        self._sync()

    def _lowest_point(self) -> float:
        """Lowest z over the robot's collision geoms, from their shapes (after mj_kinematics)."""
        model, data = self.model, self.data
        gt = self._mujoco.mjtGeom
        sphere, capsule, cylinder, box = (int(t) for t in (gt.mjGEOM_SPHERE, gt.mjGEOM_CAPSULE, gt.mjGEOM_CYLINDER,
                                                            gt.mjGEOM_BOX))
        lowest = np.inf
        for g in self._robot_geoms:
            if model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0:
                continue  # visual-only geoms may sink into the floor
            size, pos, rot = model.geom_size[g], data.geom_xpos[g], data.geom_xmat[g].reshape(3, 3)
            kind = int(model.geom_type[g])
            if kind == sphere:
                z = pos[2] - size[0]
            elif kind in (capsule, cylinder):
                axis_z = rot[2, 2]  # world-z component of the geom's axis (its local z)
                radial = size[0] if kind == capsule else size[0] * np.sqrt(max(0.0, 1.0 - axis_z ** 2))
                z = pos[2] - abs(axis_z) * size[1] - radial
            elif kind == box:
                z = pos[2] - float(np.abs(rot[2]) @ size)
            else:
                z = pos[2] - model.geom_rbound[g]
            lowest = min(lowest, z)
        return float(lowest)

    # -- stepping -------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self._require_open("advance()")
        steps = int(round(seconds * self.physics_hz))
        if steps < 0:
            raise DriverError(f"mujoco_a1: advance() needs seconds >= 0, got {seconds!r}")
        mujoco, model, data = self._mujoco, self.model, self.data
        qpos, qvel, ctrl = data.qpos, data.qvel, data.ctrl
        qadr, dadr, act = self._qadr, self._dadr, self._act
        tl = self.torque_limit
        mode = self._modes.mode
        if mode == "damping":
            kp, kd, target = 0.0, self.damping_kd, self._target
        else:
            kp, kd = self.kp, self.kd
            target = self._hold if mode == "hold" else self._target
        warnings = int(data.warning[_WARN_BADQACC].number)
        tau = self._tau
        for _ in range(steps):
            # PD at every physics step, as the motor boards do; clip to the motor's torque limit.
            np.subtract(target, qpos[qadr], out=tau)
            tau *= kp
            tau -= kd * qvel[dadr]
            np.clip(tau, -tl, tl, out=tau)
            ctrl[act] = tau
            mujoco.mj_step(model, data)
        self._counters["physics_steps"] += steps
        new_warnings = int(data.warning[_WARN_BADQACC].number) - warnings
        if new_warnings:
            self._counters["physics_warnings"] += new_warnings
            self._diverged = True
            self._modes.message = f"simulation diverged {new_warnings} time(s) (MuJoCo reset the state)"
        self._sync()

    def _sync(self) -> None:
        """Recompute derived quantities (contacts, velocities, accelerations) for the current state.

        After mj_step they describe the state before the last step; reads and renders should see this one.
        """
        mujoco = self._mujoco
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_rnePostConstraint(self.model, self.data)  # body accelerations for the accelerometer

    # -- commands and safe modes ----------------------------------------------------------

    def write(self, command: Command) -> None:
        self._require_open("write()")
        position = np.asarray(command.position, dtype=np.float64)
        if position.shape != (len(JOINT_NAMES),):
            raise DriverError(f"mujoco_a1: command has shape {position.shape}; it needs one target per joint, "
                              f"shape ({len(JOINT_NAMES)},), in the order {list(JOINT_NAMES)}")
        if not np.all(np.isfinite(position)):
            bad = [JOINT_NAMES[i] for i in np.flatnonzero(~np.isfinite(position))]
            raise DriverError(f"mujoco_a1: command is not finite at {bad}; send finite joint targets in rad "
                              "(the safety layer rejects these before they reach a driver)")
        if not self._modes.accepts_command():
            return
        clipped = np.clip(position, self._low, self._high)
        if np.any(clipped != position):  # the safety layer should have clamped; never leave the joint range
            self._counters["clipped_commands"] += 1
        self._target = clipped
        self._counters["writes"] += 1

    def safe_mode(self, mode: SafeMode, reason: str = "") -> None:
        self._require_open("safe_mode()")
        self._modes.enter(mode, reason)
        if mode == "hold":
            self._hold = self.data.qpos[self._qadr].copy()

    def resume(self) -> None:
        self._require_open("resume()")
        left = self._modes.leave()
        if left is not None:
            # Until the next write, track what the safe mode left (the held angles, or where the limp joints
            # are now) rather than jump to the stale pre-safe-mode target.
            held = self._hold if left == "hold" else self.data.qpos[self._qadr]
            self._target = np.clip(held, self._low, self._high)

    # -- sensing --------------------------------------------------------------------------

    def read(self) -> SensorSample:
        self._require_open("read()")
        mujoco, model, data = self._mujoco, self.model, self.data
        obj = mujoco.mjtObj.mjOBJ_SITE
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, data.site_xmat[self._imu])
        velocity = np.zeros(6)  # [angular, linear] in the IMU frame
        mujoco.mj_objectVelocity(model, data, obj, self._imu, velocity, 1)
        accel = np.zeros(6)  # includes -gravity (MuJoCo's world acceleration), as an accelerometer reads
        mujoco.mj_objectAcceleration(model, data, obj, self._imu, accel, 1)
        values = {
            "joint_position": data.qpos[self._qadr].astype(np.float32),
            "joint_velocity": data.qvel[self._dadr].astype(np.float32),
            "joint_torque": data.actuator_force[self._act].astype(np.float32),
            "imu_orientation": quat.astype(np.float32),
            "imu_angular_velocity": velocity[:3].astype(np.float32),
            "imu_linear_acceleration": accel[3:].astype(np.float32),
            "foot_contact": self._foot_contacts(),
            "base_velocity": velocity[3:].astype(np.float32),
        }
        if self.camera:
            values["image"] = self.render("track", self.image_size)
        return SensorSample(stamp=self.now(), values=values)

    def _foot_contacts(self) -> np.ndarray:
        model, data = self.model, self.data
        contact = np.zeros(len(LEGS), dtype=bool)
        sites = data.site_xpos[self._foot_sites]
        for i in range(data.ncon):
            c = data.contact[i]
            bodies = (model.geom_bodyid[c.geom1], model.geom_bodyid[c.geom2])
            for leg, body in enumerate(self._foot_bodies):
                if body in bodies and np.linalg.norm(c.pos - sites[leg]) <= self._foot_reach[leg]:
                    contact[leg] = True
        return contact

    def render(self, camera: str = "track", size: tuple[int, int] = (240, 320)) -> np.ndarray:
        """An rgb frame (h, w, 3 uint8) of the current state from `camera`, e.g. for videos."""
        self._require_open("render()")
        renderer = self._renderer((int(size[0]), int(size[1])))
        try:
            renderer.update_scene(self.data, camera=camera)
        except ValueError as exc:
            raise DriverError(f"mujoco_a1: cannot render from camera {camera!r}: {exc}") from exc
        return renderer.render()

    def _renderer(self, size: tuple[int, int]) -> Any:
        renderer = self._renderers.get(size)
        if renderer is None:
            try:
                renderer = self._mujoco.Renderer(self.model, height=size[0], width=size[1])
            except Exception as exc:  # GL context creation fails in many ways; all mean "no renderer"
                raise DriverError(f"mujoco_a1: cannot create a {size[0]}x{size[1]} offscreen renderer ({exc}); "
                                  "set MUJOCO_GL=egl (or osmesa) for headless machines, and keep the size within "
                                  "the model's <visual><global offwidth/offheight>") from exc
            self._renderers[size] = renderer
        return renderer

    # -- health ---------------------------------------------------------------------------

    def health(self) -> Health:
        details: dict[str, Any] = {**self._counters, "sim_time": self.now()}
        if self._modes.closed:
            return Health(ok=False, mode="closed", message="closed; call open()", details=details)
        finite = bool(np.all(np.isfinite(self.data.qpos)) and np.all(np.isfinite(self.data.qvel)))
        message = self._modes.message if finite else "simulation state is not finite; call reset()"
        return Health(ok=finite and not self._diverged, mode=self._modes.mode, message=message,
                      details=details)
