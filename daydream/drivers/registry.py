"""Finding a driver class by the name a config gives: a registry name, an installed entry
point (group `daydream.drivers`, so a user's package can register its robot), or `module:Class`."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from daydream.drivers.interface import Driver
from daydream.plugins import load_class

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
