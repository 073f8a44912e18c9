"""The safety layer between any policy and any actuator: `SafetyLayer` filters every command
(non-finite rejection, clamp, low-pass, rate limit), trips a watchdog on silence and latches e-stops;
its settings are `SafetyConfig` (config section `robot.safety`)."""

from __future__ import annotations

import logging
import threading
from typing import Literal

import numpy as np

from daydream.config import SafetyConfig
from daydream.drivers.interface import (SAFE_MODES, Command, Driver, DriverError, DriverSpec, Health, Mode, SafeMode,
                                        SensorSample, SimulatedDriver)

log = logging.getLogger(__name__)


class SafetyLayer(Driver):
    """A driver that filters every command to the driver it wraps.

    `SafetyLayer` wraps a driver (it *is* a `Driver`, with the wrapped driver's spec) and
    filters every command before the wrapped driver sees it, in this order:

    1. **non-finite rejection**: a command holding NaN or inf is dropped (counted, logged once
       per burst); the previous target is sent again, so the joints keep it and a driver that
       needs a steady command stream still gets one. A rejected command does not feed the
       watchdog: a policy that only emits NaN is as good as a dead one.
    2. **clamp** to the actuator's per-joint `[low, high]`.
    3. **low-pass** `y = alpha * x + (1 - alpha) * y_prev` (`lowpass_alpha = 1`: off), where
       `y_prev` is the previous target actually sent. Sharing that state with the rate limiter
       means neither can wind up against the other.
    4. **rate limit**: per joint, the target moves at most `min(max_delta,
       max_rate * dt)` from the previous target, `dt` being the driver-clock time since the
       last accepted command (the nominal control period for the first command). After
       `open()`, a resume, `clear_estop()` or a simulator `reset()` the "previous target" is
       the *measured* joint position (sensor `joint_position`), so the robot never jumps.

    Steps 3 and 4 only ever move between points inside the joint limits (the measured
    reference is clamped too), so what reaches the driver is always within `[low, high]`.

    **Watchdog.** `tick()` (call it at least at the control rate; `write`, `read` and
    `advance` call it too) switches the wrapped driver to the configured safe mode (`damping`
    or `hold`) once no command has been accepted for `watchdog_timeout_s` of driver time;
    the clock starts at `open()`. (A command arriving late, before any `tick()` saw the
    silence, still counts a trip and is then treated as the first command after it.) With
    `watchdog_auto_resume` (the default) the next valid
    command resumes the driver, starting again from the measured position: the trip exists to
    stop a robot whose policy went silent (a crashed actor, a stalled network), and a policy
    that speaks again should not need an operator. Set it to false where a person must look at
    the robot first; then only an explicit `resume()` leaves the watchdog's safe mode.

    **Safe modes requested by the caller** (`safe_mode(mode, reason)`, e.g. by an env that saw
    a sensor fault) follow the `Driver` contract: commands are ignored until `resume()`, never
    auto-resumed.

    **E-stop.** `estop(reason)` (safe to call from another thread, e.g. a button listener)
    engages the safe mode at once and latches: commands are ignored, `resume()` refuses, and
    the latch survives `close()`/`open()`, until `clear_estop()` is called explicitly. Clearing
    resumes the wrapped driver, which stays in its safe mode until the next command is written
    (`Driver.resume` semantics), and that command is rate-limited from the measured position.
    `health().mode` is `"estop"` while latched.

    If the wrapped driver is a `SimulatedDriver`, `SafetyLayer(driver)` returns a
    `SimulatedSafetyLayer`, which also forwards `advance` and `reset`, so code that checks
    `isinstance(driver, SimulatedDriver)` treats the wrapped stack like the simulator itself.
    Watchdog trips during `advance(seconds)` are detected at its end: the trip latency is one
    `advance` call (one control period in `RobotEnv`), the same as a loop calling `tick()` at
    the control rate on hardware.
    """

    def __new__(cls, driver: Driver, config: SafetyConfig | None = None) -> "SafetyLayer":
        # Simulators get the subclass that forwards advance/reset, so isinstance checks
        # against SimulatedDriver see through the layer.
        if cls is SafetyLayer and isinstance(driver, SimulatedDriver):
            cls = SimulatedSafetyLayer
        return super().__new__(cls)

    def __init__(self, driver: Driver, config: SafetyConfig | None = None) -> None:
        self.driver = driver
        self.config = config if config is not None else SafetyConfig()
        spec: DriverSpec = driver.spec
        self.spec = spec
        if self.config.safe_mode not in spec.safe_modes:
            raise ValueError(f"safety.safe_mode is {self.config.safe_mode!r} but driver {spec.name} only offers "
                             f"{list(spec.safe_modes)}")
        n = spec.actuator.size
        try:
            sensor = spec.sensor("joint_position")
        except KeyError as exc:
            raise ValueError(f"the safety layer needs sensor 'joint_position' to start from the measured pose: "
                             f"{exc.args[0]}") from None
        if int(np.prod(sensor.shape)) != n:
            raise ValueError(f"driver {spec.name}: sensor 'joint_position' has shape {sensor.shape} but the actuator "
                             f"has {n} joints")
        self._low = spec.actuator.low_array()
        self._high = spec.actuator.high_array()
        self._max_rate = np.asarray(spec.actuator.max_rate, np.float64)
        if not (self._low.shape == self._high.shape == self._max_rate.shape == (n,)):
            raise ValueError(f"driver {spec.name}: actuator low/high/max_rate must have one entry per joint ({n})")
        if np.any(self._low > self._high):
            raise ValueError(f"driver {spec.name}: actuator low exceeds high for joints "
                             f"{[spec.actuator.joint_names[i] for i in np.flatnonzero(self._low > self._high)]}")
        self._period = 1.0 / spec.control_rate_hz if spec.control_rate_hz > 0 else 0.0
        # RLock: tick() runs inside write(); estop() may come from another thread.
        self._lock = threading.RLock()
        self._mode: Mode = "closed"
        self._safe_cause: Literal["watchdog", "request"] | None = None  # why the layer is in a safe mode
        self._estopped = False
        self._estop_reason = ""
        self._safe_reason = ""
        self._target: np.ndarray | None = None     # last target sent; None: take the measured position
        self._target_time: float | None = None     # driver clock of the last accepted command
        self._last_command_time = 0.0              # watchdog reference (driver clock)
        self._nan_burst = 0
        self.counters = {"clamped": 0, "rate_limited": 0, "nan_rejected": 0, "watchdog_trips": 0, "estops": 0,
                         "commands_ignored": 0}

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            self.driver.open()
            self._rearm()
            if self._estopped:  # the latch outlives close/open: come up safe
                self._mode = "estop"
                self.driver.safe_mode(self.config.safe_mode, f"e-stop latched: {self._estop_reason}")
                log.warning("%s opened with the e-stop latched (%s); call clear_estop() to run",
                            self.spec.name, self._estop_reason)
            else:
                self._mode, self._safe_cause = "active", None

    def close(self) -> None:
        with self._lock:
            self.driver.close()
            self._mode, self._safe_cause = "closed", None
            self._target = None

    def now(self) -> float:
        return self.driver.now()

    # -- commands -------------------------------------------------------------------------

    def write(self, command: Command) -> None:
        """Filter `command` (see the class docstring) and send the result to the wrapped driver."""
        with self._lock:
            if self._mode == "closed":
                raise DriverError(f"safety layer over {self.spec.name} is closed; call open() before write()")
            position = np.asarray(command.position, np.float64)
            n = self.spec.actuator.size
            if position.shape != (n,):
                raise ValueError(f"command for {self.spec.name} has shape {position.shape}, expected ({n},): one "
                                 f"target per joint {list(self.spec.actuator.joint_names)}")
            self.tick()
            if not np.all(np.isfinite(position)):
                self._reject_non_finite(position, command.stamp)
                return
            if self._nan_burst:
                log.info("%s: commands are finite again after %d rejected", self.spec.name, self._nan_burst)
                self._nan_burst = 0
            if not self._accepting():
                self.counters["commands_ignored"] += 1
                return
            now = self.driver.now()
            target = self._filter(position, now)
            self._target, self._target_time, self._last_command_time = target, now, now
            self.driver.write(Command(target.copy(), stamp=command.stamp))

    def _accepting(self) -> bool:
        """Whether a valid command may reach the driver now; auto-resumes after a watchdog trip."""
        if self._mode == "active":
            return True
        if self._mode in SAFE_MODES and self._safe_cause == "watchdog" and self.config.watchdog_auto_resume:
            self.driver.resume()
            self._rearm()
            self._mode, self._safe_cause = "active", None
            log.warning("%s: commands are back, leaving the watchdog's %s mode", self.spec.name,
                        self.config.safe_mode)
            return True
        return False

    def _filter(self, position: np.ndarray, now: float) -> np.ndarray:
        clamped = np.clip(position, self._low, self._high)
        if np.any(clamped != position):
            self.counters["clamped"] += 1
        if self._target is None:
            reference, dt = self._measured_position(), self._period
        else:
            reference, dt = self._target, now - (self._target_time if self._target_time is not None else now)
            if dt < 0:  # the clock went backwards (a simulator reset we did not see): assume one period
                dt = self._period
        alpha = self.config.lowpass_alpha
        smoothed = clamped if alpha == 1.0 else alpha * clamped + (1.0 - alpha) * reference
        limit = np.minimum(self.config.max_delta, self._max_rate * dt)
        step = smoothed - reference
        limited = np.clip(step, -limit, limit)
        if np.any(limited != step):
            self.counters["rate_limited"] += 1
        # Both ends lie inside [low, high]; the clip only guards against rounding.
        return np.clip(reference + limited, self._low, self._high)

    def _measured_position(self) -> np.ndarray:
        sample = self.driver.read()
        value = sample.values.get("joint_position")
        if value is None:
            raise DriverError(f"{self.spec.name} returned no 'joint_position' reading; the safety layer needs it to "
                              f"start from the measured pose")
        measured = np.asarray(value, np.float64).reshape(-1)
        if measured.shape != self._low.shape or not np.all(np.isfinite(measured)):
            reason = f"measured joint_position {measured.tolist()} is not {self._low.size} finite values"
            self.safe_mode(self.config.safe_mode, reason)
            raise DriverError(f"{self.spec.name}: {reason}; actuators switched to {self.config.safe_mode} mode. "
                              f"Check the joint encoders, then call resume()")
        # Clamped, so every later filter step stays within the joint limits.
        return np.clip(measured, self._low, self._high)

    def _reject_non_finite(self, position: np.ndarray, stamp: float) -> None:
        self.counters["nan_rejected"] += 1
        if self._nan_burst == 0:
            bad = [self.spec.actuator.joint_names[i] for i in np.flatnonzero(~np.isfinite(position))]
            log.warning("%s: rejecting a non-finite command (joints %s); keeping the previous target", self.spec.name,
                        bad)
        self._nan_burst += 1
        if self._mode == "active" and self._target is not None:
            self.driver.write(Command(self._target.copy(), stamp=stamp))

    # -- watchdog, safe modes, e-stop ----------------------------------------------------

    def tick(self) -> Mode:
        """Check the watchdog; returns the layer's mode afterwards."""
        with self._lock:
            if self._mode == "active":
                silent = self.driver.now() - self._last_command_time
                if silent >= self.config.watchdog_timeout_s:
                    reason = (f"watchdog: no command for {silent:.3f} s "
                              f"(safety.watchdog_timeout_s={self.config.watchdog_timeout_s})")
                    self.counters["watchdog_trips"] += 1
                    self._enter_safe(self.config.safe_mode, "watchdog", reason)
            return self._mode

    def safe_mode(self, mode: SafeMode, reason: str = "") -> None:
        """Switch the actuators to `mode` now; commands are ignored until `resume()` (no auto-resume)."""
        if mode not in self.spec.safe_modes:
            raise ValueError(f"driver {self.spec.name} has no safe mode {mode!r}; it has {list(self.spec.safe_modes)}")
        with self._lock:
            if self._mode == "closed":  # close() already left the actuators safe; open() starts afresh
                log.debug("%s: safe_mode(%s) while closed ignored (%s)", self.spec.name, mode, reason)
                return
            if self._estopped:  # switching damping <-> hold is still safe, but the latch stays
                self.driver.safe_mode(mode, reason)
                return
            self._enter_safe(mode, "request", reason or "requested")

    def _enter_safe(self, mode: SafeMode, cause: Literal["watchdog", "request"], reason: str) -> None:
        self.driver.safe_mode(mode, reason)
        if (self._mode, self._safe_cause) != (mode, cause):
            log.warning("%s: switching to %s mode (%s)", self.spec.name, mode, reason)
        self._mode, self._safe_cause, self._safe_reason = mode, cause, reason
        self._target = None

    def resume(self) -> None:
        """Leave a safe mode (watchdog's or requested); the next command starts from the measured pose."""
        with self._lock:
            if self._estopped:
                raise DriverError(f"{self.spec.name}: the e-stop is latched ({self._estop_reason}); resume() cannot "
                                  f"clear it, call clear_estop() once the robot is safe")
            if self._mode == "closed":
                raise DriverError(f"safety layer over {self.spec.name} is closed; call open()")
            if self._mode != "active":
                self.driver.resume()
                log.warning("%s: resuming from %s mode", self.spec.name, self._mode)
            self._mode, self._safe_cause = "active", None
            self._rearm()

    def estop(self, reason: str = "") -> None:
        """Engage the safe mode now and latch until `clear_estop()`."""
        reason = reason or "e-stop"
        with self._lock:
            new = not self._estopped
            # Latch before touching the driver: if the driver fails, commands stay blocked.
            self._estopped, self._target = True, None
            if new:
                self.counters["estops"] += 1
                self._estop_reason = reason
                log.error("%s: E-STOP (%s): %s mode, commands ignored until clear_estop()", self.spec.name, reason,
                          self.config.safe_mode)
            if self._mode != "closed":
                self._mode = "estop"
                self.driver.safe_mode(self.config.safe_mode, f"e-stop: {reason}")

    def clear_estop(self, by: str = "") -> None:
        """Release the e-stop latch; the next command is rate-limited from the measured pose.

        `by` says who cleared it (logged: clearing an e-stop is always an explicit, recorded act).
        """
        with self._lock:
            if not self._estopped:
                return
            self._estopped = False
            log.warning("%s: e-stop cleared%s (was: %s)", self.spec.name, f" by {by}" if by else "",
                        self._estop_reason)
            self._estop_reason = ""
            if self._mode != "closed":
                self.driver.resume()
                self._mode, self._safe_cause = "active", None
                self._rearm()

    @property
    def estopped(self) -> bool:
        return self._estopped

    def _rearm(self) -> None:
        """Start over from the measured pose, with the watchdog counting from now."""
        self._target, self._target_time = None, None
        self._last_command_time = self.driver.now()

    # -- sensing and health ---------------------------------------------------------------

    def read(self) -> SensorSample:
        self.tick()
        return self.driver.read()

    def health(self) -> Health:
        inner = self.driver.health()
        with self._lock:
            if self._estopped:
                mode: Mode = "estop"
            elif self._mode in SAFE_MODES:
                mode = self._mode
            else:  # active or closed: the driver knows best (it may have gone safe on its own)
                mode = inner.mode
            details = {**inner.details, **self.counters, "driver_mode": inner.mode, "safety_mode": self._mode}
            messages = [inner.message] if inner.message else []
            own = ""
            if self._estopped:
                own = f"e-stop latched: {self._estop_reason}"
                details["estop_reason"] = self._estop_reason
            elif self._mode in SAFE_MODES:
                own = f"{self._mode}: {self._safe_reason}"
            if own and own not in inner.message:  # drivers often echo the reason we gave them
                messages.append(own)
            return Health(ok=inner.ok and not self._estopped, mode=mode, message="; ".join(messages), details=details)

    def render(self) -> np.ndarray | None:
        """The wrapped driver's `render()`, if it has one (cameras in simulators)."""
        render = getattr(self.driver, "render", None)
        return render() if callable(render) else None


class SimulatedSafetyLayer(SafetyLayer, SimulatedDriver):
    """The safety layer over a simulator: also forwards `advance` and `reset`."""

    driver: SimulatedDriver

    def advance(self, seconds: float) -> None:
        self.tick()
        self.driver.advance(seconds)
        self.tick()

    def reset(self, seed: int | None = None) -> None:
        with self._lock:
            self.driver.reset(seed)
            # The pose jumped and the clock may have restarted: take both afresh.
            self._rearm()
            if self._estopped and self._mode != "closed":
                self.driver.safe_mode(self.config.safe_mode, f"e-stop latched: {self._estop_reason}")
            elif self._mode in SAFE_MODES:
                self.driver.safe_mode(self._mode, self._safe_reason)
