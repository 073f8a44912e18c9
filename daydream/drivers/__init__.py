"""Robot drivers behind one small interface (`interface`), found by name (`registry`),
with a safety layer between any policy and any actuator (`safety`)."""

from daydream.drivers.interface import (ActuatorSpec, Command, Driver, DriverError, DriverSpec, Health, SensorSample,
                                        SensorSpec, SimulatedDriver)
from daydream.drivers.registry import driver_class, make_driver

__all__ = ["ActuatorSpec", "Command", "Driver", "DriverError", "DriverSpec", "Health", "SensorSample", "SensorSpec",
           "SimulatedDriver", "driver_class", "make_driver"]
