"""Robot drivers behind one small interface (`interface`), found by name (`registry`),
with a safety layer between any policy and any actuator (`safety`) and the mode
bookkeeping every driver shares (`modes`)."""

from daydream.drivers.interface import (SAFE_MODES, ActuatorSpec, Command, Driver, DriverError, DriverSpec, Health,
                                        SensorSample, SensorSpec, SimulatedDriver)
from daydream.drivers.modes import DriverModes
from daydream.drivers.registry import driver_class, make_driver

__all__ = ["SAFE_MODES", "ActuatorSpec", "Command", "Driver", "DriverError", "DriverModes", "DriverSpec", "Health",
           "SensorSample", "SensorSpec", "SimulatedDriver", "driver_class", "make_driver"]
