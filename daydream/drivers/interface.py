"""The driver interface: what every robot (real or simulated) implements to join the stack.

A driver is deliberately small, because users write their own for new robots:

* it **declares** what it has: `DriverSpec` lists its sensors (`SensorSpec`: name,
  shape, dtype, unit, limits, rate) and its actuator command (`ActuatorSpec`: joint
  names, unit, position limits, the largest change per second it accepts, its torque
  limits), its control rate and its safe modes;
* it **reads** one time-stamped `SensorSample` holding every declared sensor;
* it **writes** one `Command` (a target per joint, in the declared unit);
* it **switches to a safe mode** (`damping`: joints follow zero-velocity damping;
  `hold`: joints hold their current position) on request, and leaves it on the next
  `write` only after `resume()`;
* it **reports health** (`Health`);
* lifecycle `open()` / `close()`, reopenable.

Time: `now()` is the driver's clock in seconds (wall-clock monotonic for hardware,
simulation time for a simulator); sample stamps and watchdogs use it. A simulated
driver additionally implements `SimulatedDriver.advance(seconds)`, so an env can run it
as fast as possible instead of pacing by the wall clock.

Drivers are named in configs by registry name (`mujoco_a1`) or as `module:Class`
(`my_robot.driver:MyDriver`); see `daydream.drivers.registry`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Literal, get_args

import numpy as np

from daydream.config import SAFE_MODES, SafeMode  # noqa: F401 (defined with the settings that name them)

Mode = Literal["closed", "active", "damping", "hold", "estop"]
MODES: tuple[Mode, ...] = get_args(Mode)


class DriverError(RuntimeError):
    """The driver or its device failed (missing device, stale data, wrong shapes); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class SensorSpec:
    name: str                     # key in SensorSample.values, e.g. "joint_position"
    shape: tuple[int, ...]
    dtype: str                    # numpy dtype name: "float32", "bool", "uint8"
    unit: str                     # "rad", "rad/s", "N*m", "quat_wxyz", "m/s", "m/s^2", "bool", "rgb"
    low: float | None = None      # physical bounds of valid readings (None: unbounded)
    high: float | None = None
    rate_hz: float = 0.0          # how often the reading refreshes (0: every read)


@dataclasses.dataclass(frozen=True)
class ActuatorSpec:
    joint_names: tuple[str, ...]
    unit: str                     # what a Command holds per joint: "rad" (position targets)
    low: tuple[float, ...]        # per-joint command limits (joint range)
    high: tuple[float, ...]
    max_rate: tuple[float, ...]   # per-joint largest change of the target per second
    torque_limit: tuple[float, ...]  # per-joint motor torque limit in N*m (enforced by the driver/motor)

    @property
    def size(self) -> int:
        return len(self.joint_names)

    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, np.float64)

    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, np.float64)


@dataclasses.dataclass(frozen=True)
class DriverSpec:
    name: str
    control_rate_hz: float        # the rate commands are meant to be written at
    sensors: tuple[SensorSpec, ...]
    actuator: ActuatorSpec
    safe_modes: tuple[SafeMode, ...] = ("damping", "hold")

    def sensor(self, name: str) -> SensorSpec:
        for s in self.sensors:
            if s.name == name:
                return s
        raise KeyError(f"driver {self.name} has no sensor '{name}'; it has {[s.name for s in self.sensors]}")


@dataclasses.dataclass(frozen=True)
class SensorSample:
    stamp: float                  # driver clock (seconds) when the readings were taken
    values: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Command:
    position: np.ndarray          # one target per actuator joint, in ActuatorSpec.unit
    stamp: float = 0.0            # driver clock when it was issued (0: unknown)


@dataclasses.dataclass(frozen=True)
class Health:
    ok: bool
    mode: Mode
    message: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Driver(abc.ABC):
    """Base class of every driver; see the module docstring for the contract."""

    spec: DriverSpec

    @abc.abstractmethod
    def open(self) -> None:
        """Connect to the device (or build the simulation); afterwards read/write work. Mode: active."""

    @abc.abstractmethod
    def close(self) -> None:
        """Put the actuators in a safe mode, release the device. Idempotent; `open()` may follow."""

    @abc.abstractmethod
    def now(self) -> float:
        """The driver's clock in seconds."""

    @abc.abstractmethod
    def read(self) -> SensorSample:
        """The newest readings of every declared sensor."""

    @abc.abstractmethod
    def write(self, command: Command) -> None:
        """Send joint targets. Ignored (and counted in health) while in a safe mode or e-stopped."""

    @abc.abstractmethod
    def safe_mode(self, mode: SafeMode, reason: str = "") -> None:
        """Switch the actuators to `mode` now; commands are ignored until `resume()`."""

    @abc.abstractmethod
    def resume(self) -> None:
        """Leave a safe mode: the next `write` is applied again. (E-stops live in the safety layer.)"""

    @abc.abstractmethod
    def health(self) -> Health:
        ...

    def __enter__(self) -> "Driver":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimulatedDriver(Driver):
    """A driver whose clock only moves when told: envs call `advance` instead of sleeping."""

    @abc.abstractmethod
    def advance(self, seconds: float) -> None:
        """Simulate `seconds` of time under the current command (or safe mode)."""

    def reset(self, seed: int | None = None) -> None:
        """Put the robot back in its initial state (sims only; hardware has no resets)."""
        raise NotImplementedError(f"{type(self).__name__} cannot reset")
