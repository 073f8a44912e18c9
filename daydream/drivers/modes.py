"""`DriverModes`: the mode bookkeeping that every driver otherwise writes again.

A driver is `closed`, `active` or in one of its safe modes. In a safe mode it ignores
commands (counted), entering one is counted and remembered with its reason for
`health().message`, and `resume()` leaves it. What a mode *does* to the actuators (torque
off, hold a pose) stays the driver's own code; this class only keeps the books.
"""

from __future__ import annotations

from daydream.drivers.interface import SAFE_MODES, DriverError, Mode, SafeMode


class DriverModes:
    """One driver's mode, message and mode counters (kept in the driver's own `counters` dict)."""

    def __init__(self, driver_name: str, counters: dict[str, int]) -> None:
        self.driver_name = driver_name
        self.counters = counters
        self.counters.setdefault("ignored_commands", 0)
        self.counters.setdefault("safe_mode_entries", 0)
        self.mode: Mode = "closed"
        self.message = ""

    @property
    def closed(self) -> bool:
        return self.mode == "closed"

    @property
    def safe(self) -> bool:
        return self.mode in SAFE_MODES

    def activate(self) -> None:
        """After open(): commands are applied."""
        self.mode, self.message = "active", ""

    def close(self) -> None:
        self.mode, self.message = "closed", ""

    def accepts_command(self) -> bool:
        """True when active; otherwise the command is counted as ignored and must not reach the actuators."""
        if self.mode == "active":
            return True
        self.counters["ignored_commands"] += 1
        return False

    def enter(self, mode: SafeMode, reason: str = "") -> Mode:
        """Switch to safe mode `mode` (DriverError if it is not one); returns the mode it left."""
        if mode not in SAFE_MODES:
            raise DriverError(f"{self.driver_name}: unknown safe mode {mode!r}; use one of {list(SAFE_MODES)}")
        previous = self.mode
        if mode != previous:
            self.counters["safe_mode_entries"] += 1
        self.mode = mode
        self.message = f"{mode}: {reason}" if reason else mode
        return previous

    def leave(self) -> SafeMode | None:
        """Back to active from a safe mode; returns the safe mode it left, or None if it was in none."""
        if self.mode not in SAFE_MODES:
            return None
        left: SafeMode = self.mode  # type: ignore[assignment]
        self.activate()
        return left
