"""Finding a driver class by the name a config gives (a registry name, an installed entry
point in group `daydream.drivers`, so a user's package can register its robot, or
`module:Class`), and making the configured driver with its arguments and safety layer."""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from daydream.drivers.interface import Driver
from daydream.plugins import load_class

if TYPE_CHECKING:
    from daydream.config import RobotConfig

BUILTIN = {
    "mujoco_a1": "daydream.drivers.mujoco_a1:MuJoCoA1Driver",
    "dynamixel_arm": "daydream.drivers.dynamixel.arm:DynamixelArm",
}
ENTRY_POINT_GROUP = "daydream.drivers"


def driver_class(name: str) -> type[Driver]:
    target = BUILTIN.get(name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                target = ep.value
                break
    if target is None:
        if ":" not in name:
            known = sorted({*BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
            raise ValueError(f"unknown driver '{name}'; use one of {known} or 'package.module:ClassName'")
        target = name
    return load_class(target, Driver, "driver")


def make_driver(name: str, args: dict[str, Any] | None = None) -> Driver:
    """Construct (not open) the driver `name` with keyword `args` from the config."""
    cls = driver_class(name)
    try:
        return cls(**(args or {}))
    except TypeError as exc:
        raise ValueError(f"driver '{name}' does not take these arguments {sorted(args or {})}: {exc}") from exc


def make_safe_driver(robot: RobotConfig, seed: int = 0) -> Any:
    """The configured driver (not opened) behind the safety layer configured in `robot.safety`."""
    from daydream.drivers.safety import SafetyLayer

    return SafetyLayer(make_driver(robot.driver, driver_arguments(robot, seed)), robot.safety)


def driver_arguments(robot: RobotConfig, seed: int = 0) -> dict[str, Any]:
    """`robot.driver_args`, plus the seed, control rate and camera switch for drivers that take them (unless set
    there)."""
    args = dict(robot.driver_args)
    for name, value in (("seed", seed), ("control_hz", robot.control_hz), ("camera", robot.camera)):
        if name not in args and _takes(robot.driver, name):
            args[name] = value
    return args


def _takes(driver: str, argument: str) -> bool:
    return argument in inspect.signature(driver_class(driver)).parameters
