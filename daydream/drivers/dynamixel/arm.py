"""`DynamixelArm`: an arm of Dynamixel X-series servos (Protocol 2.0) behind the driver interface.

This module owns the arm's side of the driver contract: turning a config (servo ids, joint names,
limits, calibration) into a `DriverSpec`, bringing the servos up safely, converting between
register units and SI units, keeping every command inside the configured limits, the safe modes
and the health report. Bytes on the wire are `protocol`'s business, the port is `SerialLink`'s.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from daydream.drivers.dynamixel import protocol as dxl
from daydream.drivers.dynamixel.protocol import XAddr
from daydream.drivers.interface import (SAFE_MODES, ActuatorSpec, Command, Driver, DriverError, DriverSpec, Health,
                                        SafeMode, SensorSample, SensorSpec)
from daydream.drivers.modes import DriverModes
from daydream.drivers.serial_link import NoReplyError, SerialConfig, SerialLink

log = logging.getLogger(__name__)

TICKS_PER_REV = 4096
CENTER_TICKS = 2048
RAD_PER_TICK = 2.0 * math.pi / TICKS_PER_REV
VELOCITY_UNIT_RAD_S = 0.229 * 2.0 * math.pi / 60.0   # one Present Velocity / Profile Velocity unit
CURRENT_UNIT_A = 0.00269                            # one Present/Goal Current unit (XM/XH series)
STATE_ADDR, STATE_LEN = int(XAddr.PRESENT_CURRENT), 10   # 126..135: current (2), velocity (4), position (4)

HARDWARE_ERRORS = {0: "input voltage", 2: "overheating", 3: "motor encoder", 4: "electrical shock", 5: "overload"}


def _per_joint(value: Any, n: int, name: str) -> list[float]:
    """A scalar or one value per joint, as floats."""
    values = [value] * n if isinstance(value, (int, float)) and not isinstance(value, bool) else list(value)
    if len(values) != n:
        raise DriverError(f"dynamixel_arm: {name} needs one value per joint ({n}) or a single value, got {value!r}")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise DriverError(f"dynamixel_arm: {name} must be numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise DriverError(f"dynamixel_arm: {name} must be finite, got {value!r}")
    return out


class DynamixelArm(Driver):
    """An arm of Dynamixel X-series servos on one bus.

    Units and calibration. A servo's position register counts 4096 ticks per turn, 2048 being its
    centre; the joint angle is `q = sign * (servo_angle - offset)` with `servo_angle = (ticks - 2048) *
    2*pi/4096`, so `signs` (+1/-1) and `offsets` (rad) calibrate each joint. Velocities are converted
    from 0.229 rpm units to rad/s, currents from 2.69 mA units (X-series with current sensing: XM, XH)
    to A. Joint limits must lie inside the servo's single-turn range (position mode).

    Per control step the arm does one SYNC_READ of the contiguous block 126..135 (Present Current,
    Velocity, Position: 10 bytes per servo) in `read()` and one SYNC_WRITE of Goal Position in
    `write()` (no reply), as fast arm drivers do.

    Bring-up (`open()`): ping every id (a clear error names the missing ids and joints); check and, if
    needed, program the EEPROM settings (operating mode, the servo's own Min/Max Position Limit set
    to the configured joint limits, so the servo itself also bounds its goals); these need torque
    off, so a servo whose settings must change is switched off first (logged); set Profile Velocity
    from `velocity_limit` (the servo's own trajectory speed cap) and, with `current_limit`, use
    current-based position mode with Goal Current at that limit; set the goal to the present position
    (clamped into the limits) and only then enable torque, so the arm does not jump.

    Safe modes: `damping` switches torque off: the servos go limp (no active damping: only their gear
    friction holds them, so an arm loaded by gravity sags or falls; use `hold` where that matters).
    `hold` sets the goal to the present position (clamped) with torque on. `resume()` re-enables
    torque from the present position. `close()` switches torque off.

    After the link reconnects (adapter unplugged and back) the arm checks the servos' torque state;
    if servos lost power meanwhile (torque off where it should be on) it switches to `damping` and
    the call raises a DriverError saying so; `resume()` brings the arm back from the present position.

    Keyword arguments (all from `robot.driver_args` in the config):
      ids: servo ids, one per joint, in joint order.  joint_names: names (default joint_<id>).
      port: serial device (e.g. /dev/ttyUSB0, better a /dev/serial/by-id/ link), or
        usb_vid / usb_pid (/ usb_serial) to find the adapter by USB id (U2D2: 0x0403 / 0x6014).
      baudrate: the servos' baudrate (default 1 Mbps).
      position_limits: [low, high] in rad for every joint, or one pair per joint (required:
        commands are clamped into these, and the servos are programmed with them).
      velocity_limit: rad/s (one or per joint): the servos' Profile Velocity and the declared
        largest target change per second.
      current_limit: A (one or per joint), or None: with a value the servos run current-based
        position mode with Goal Current at the limit (XM/XH series only).
      torque_constant: N*m/A (one or per joint), or None: adds a `joint_torque` sensor
        (current * constant) and declares torque limits (otherwise unbounded: inf).
      signs, offsets: calibration, joint = sign * (servo angle - offset), rad.
      control_hz: the rate commands are meant to come at.
      timeout_s, retries: per-request reply timeout and retries.
      reconnect_timeout_s, reconnect_interval_s: how long and how often to reopen a vanished port.
    """

    def __init__(self, ids: Sequence[int], joint_names: Sequence[str] | None = None, port: str | None = None,
                 usb_vid: int | str | None = None, usb_pid: int | str | None = None, usb_serial: str | None = None,
                 baudrate: int = 1_000_000, position_limits: Sequence[Any] | None = None,
                 velocity_limit: float | Sequence[float] = 2.0, current_limit: float | Sequence[float] | None = None,
                 torque_constant: float | Sequence[float] | None = None, signs: Sequence[int] | None = None,
                 offsets: float | Sequence[float] = 0.0, control_hz: float = 50.0, timeout_s: float = 0.05,
                 retries: int = 2, reconnect_timeout_s: float = 3.0, reconnect_interval_s: float = 0.2,
                 name: str = "dynamixel_arm") -> None:
        self.ids = [int(i) for i in ids]
        n = len(self.ids)
        if n == 0 or len(set(self.ids)) != n or not all(0 <= i <= dxl.MAX_ID for i in self.ids):
            raise DriverError(f"dynamixel_arm: ids must be distinct servo ids 0..{dxl.MAX_ID}, one per joint; got "
                              f"{list(ids)!r}")
        self.joint_names = tuple(joint_names) if joint_names is not None else tuple(f"joint_{i}" for i in self.ids)
        if len(self.joint_names) != n or len(set(self.joint_names)) != n:
            raise DriverError(f"dynamixel_arm: joint_names must be {n} distinct names (one per id {self.ids}); got "
                              f"{list(self.joint_names)!r}")
        if not control_hz > 0:
            raise DriverError(f"dynamixel_arm: control_hz must be positive, got {control_hz!r}")
        self.name = name
        self.control_hz = float(control_hz)
        self.signs = [1.0] * n if signs is None else _per_joint(signs, n, "signs")
        if any(s not in (1.0, -1.0) for s in self.signs):
            raise DriverError(f"dynamixel_arm: signs must be +1 or -1 per joint, got {signs!r}")
        self.offsets = _per_joint(offsets, n, "offsets")
        self.low, self.high = self._parse_limits(position_limits, n)
        self.velocity_limit = _per_joint(velocity_limit, n, "velocity_limit")
        if any(v <= 0 for v in self.velocity_limit):
            raise DriverError(f"dynamixel_arm: velocity_limit must be positive rad/s, got {velocity_limit!r}")
        self.current_limit = None if current_limit is None else _per_joint(current_limit, n, "current_limit")
        if self.current_limit is not None and any(c <= 0 for c in self.current_limit):
            raise DriverError(f"dynamixel_arm: current_limit must be positive A, got {current_limit!r}")
        self.torque_constant = None if torque_constant is None else _per_joint(torque_constant, n, "torque_constant")

        # Tick bounds strictly inside the joint limits, so rounding never leaves them.
        ends = [sorted((self._to_ticks_f(i, self.low[i]), self._to_ticks_f(i, self.high[i]))) for i in range(n)]
        self.tick_low = np.array([math.ceil(a - 1e-9) for a, _ in ends], np.int64)
        self.tick_high = np.array([math.floor(b + 1e-9) for _, b in ends], np.int64)
        bad = [self.joint_names[i] for i in range(n) if self.tick_low[i] < 0 or self.tick_high[i] > TICKS_PER_REV - 1]
        if bad:
            raise DriverError(f"dynamixel_arm: position_limits of {bad} fall outside the servo's single turn (ticks "
                              f"0..{TICKS_PER_REV - 1}, i.e. servo angles -pi..pi around the centre); narrow them or "
                              "change offsets/signs")
        self._sign = np.array(self.signs)
        self._offset = np.array(self.offsets)
        self._low_arr, self._high_arr = np.array(self.low), np.array(self.high)
        self.serial_config = SerialConfig(port=port, usb_vid=usb_vid, usb_pid=usb_pid, usb_serial=usb_serial,
                                          baudrate=int(baudrate), timeout_s=float(timeout_s), retries=int(retries),
                                          reconnect_timeout_s=float(reconnect_timeout_s),
                                          reconnect_interval_s=float(reconnect_interval_s))
        self.spec = self._make_spec()
        self.link: SerialLink | None = None
        self._error = ""              # the last failed exchange; cleared by the next good one
        self._seen_reconnects = 0
        self.models: dict[int, int] = {}
        self._alerts: dict[int, str] = {}
        self.counters = {"reads": 0, "writes": 0, "clamped_commands": 0, "ignored_commands": 0,
                         "safe_mode_entries": 0, "read_errors": 0, "write_errors": 0, "torque_lost": 0,
                         "hardware_alerts": 0}
        self._modes = DriverModes(self.name, self.counters)

    # -- configuration --------------------------------------------------------------------

    def _parse_limits(self, limits: Sequence[Any] | None, n: int) -> tuple[list[float], list[float]]:
        if limits is None:
            raise DriverError("dynamixel_arm: position_limits is required: [low, high] in rad for all joints, or one "
                              f"pair per joint ({n}), e.g. [[-1.5, 1.5], ...]; commands are clamped into them")
        pairs = list(limits)
        if len(pairs) == 2 and all(isinstance(v, (int, float)) for v in pairs):
            pairs = [pairs] * n
        if len(pairs) != n or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise DriverError(f"dynamixel_arm: position_limits must be [low, high] or {n} such pairs, got {limits!r}")
        low = [float(p[0]) for p in pairs]
        high = [float(p[1]) for p in pairs]
        bad = [self.joint_names[i] for i in range(n)
               if not (math.isfinite(low[i]) and math.isfinite(high[i]) and low[i] < high[i])]
        if bad:
            raise DriverError(f"dynamixel_arm: position_limits of {bad} must be finite with low < high, got {limits!r}")
        return low, high

    def _to_ticks_f(self, i: int, q: float) -> float:
        servo_angle = self.signs[i] * q + self.offsets[i]
        return CENTER_TICKS + servo_angle / RAD_PER_TICK

    def ticks_to_rad(self, ticks: np.ndarray) -> np.ndarray:
        """Servo position registers -> joint angles (rad)."""
        return self._sign * ((np.asarray(ticks, np.float64) - CENTER_TICKS) * RAD_PER_TICK - self._offset)

    def rad_to_ticks(self, q: np.ndarray) -> np.ndarray:
        """Joint angles -> position registers, rounded and kept within the limits' tick bounds."""
        ticks = np.rint(CENTER_TICKS + (self._sign * np.asarray(q, np.float64) + self._offset) / RAD_PER_TICK)
        return np.clip(ticks.astype(np.int64), self.tick_low, self.tick_high)

    def _make_spec(self) -> DriverSpec:
        n = len(self.ids)
        # Readings may lie anywhere in the servo's turn (a limp joint can be pushed past the limits).
        turn = [sorted((self.signs[i] * (-math.pi - self.offsets[i]), self.signs[i] * (math.pi - self.offsets[i])))
                for i in range(n)]
        pos_low, pos_high = min(t[0] for t in turn), max(t[1] for t in turn)
        if self.current_limit is not None and self.torque_constant is not None:
            torque_limit = tuple(c * k for c, k in zip(self.current_limit, self.torque_constant))
        else:
            torque_limit = (math.inf,) * n
        sensors = [SensorSpec("joint_position", (n,), "float32", "rad", pos_low, pos_high),
                   SensorSpec("joint_velocity", (n,), "float32", "rad/s"),
                   SensorSpec("joint_current", (n,), "float32", "A")]
        if self.torque_constant is not None:
            sensors.append(SensorSpec("joint_torque", (n,), "float32", "N*m"))
        actuator = ActuatorSpec(joint_names=self.joint_names, unit="rad", low=tuple(self.low), high=tuple(self.high),
                                max_rate=tuple(self.velocity_limit), torque_limit=torque_limit)
        return DriverSpec(name=self.name, control_rate_hz=self.control_hz, sensors=tuple(sensors), actuator=actuator,
                          safe_modes=SAFE_MODES)

    def _joints(self, ids: Sequence[Any]) -> str:
        return ", ".join(f"{i} ({self.joint_names[self.ids.index(i)]})" if i in self.ids else str(i) for i in ids)

    # -- bus helpers ----------------------------------------------------------------------

    def _link(self, what: str) -> SerialLink:
        if self._modes.closed or self.link is None:
            raise DriverError(f"{self.name}: {what} on a closed driver; call open() first")
        return self.link

    def _exchange(self, packet: bytes, what: str) -> dict[Any, bytes]:
        """One exchange with errors reworded to name servos and joints."""
        link = self._link(what)
        try:
            replies = link.exchange(packet)
        except NoReplyError as exc:
            hint = (f"{exc.corrupted} replies arrived corrupted: check the wiring and the baudrate" if exc.corrupted
                    else "check power, wiring, ids and baudrate")
            self._error = (f"{self.name}: servo(s) {self._joints(exc.missing)} did not answer {what} on {link.where} "
                           f"after {exc.attempts} tries of {link.config.timeout_s * 1000:g} ms; {hint} "
                           f"({link.config.baudrate})")
            raise DriverError(self._error) from exc
        except DriverError as exc:
            self._error = f"{self.name}: {what} failed: {exc}"
            raise DriverError(self._error) from exc
        self._error = ""
        return replies

    def _send(self, packet: bytes, what: str) -> None:
        link = self._link(what)
        try:
            link.transact(packet, expect_reply=False)
        except DriverError as exc:
            self._error = f"{self.name}: {what} failed: {exc}"
            raise DriverError(self._error) from exc

    def _write_each(self, addr: int, size: int, values: dict[int, int], what: str) -> None:
        """WRITE to each servo with a status reply (for settings that must be confirmed)."""
        for servo_id, value in values.items():
            frame = self._exchange(dxl.write_packet(servo_id, addr, dxl.to_bytes(value, size)), what)[servo_id]
            dxl.decode_status(frame).check(f"{what} (WRITE at address {addr})")

    def _read_each(self, addr: int, size: int, what: str) -> dict[int, int]:
        out = {}
        for servo_id in self.ids:
            frame = self._exchange(dxl.read_packet(servo_id, addr, size), what)[servo_id]
            out[servo_id] = dxl.from_bytes(dxl.parse_read(dxl.decode_status(frame), size, what))
        return out

    def _sync_read(self, addr: int, size: int, what: str) -> dict[int, dxl.Status]:
        replies = self._exchange(dxl.sync_read_packet(self.ids, addr, size), what)
        statuses = {i: dxl.decode_status(replies[i], check_crc=False) for i in self.ids}
        for status in statuses.values():
            dxl.parse_read(status, size, what)
        return statuses

    def _sync_write(self, addr: int, size: int, values: dict[int, int], what: str) -> None:
        data = {i: dxl.to_bytes(v, size) for i, v in values.items()}
        self._send(dxl.sync_write_packet(addr, size, data), what)

    def _present_ticks(self) -> np.ndarray:
        statuses = self._sync_read(int(XAddr.PRESENT_POSITION), 4, "reading positions")
        return np.array([dxl.from_bytes(statuses[i].params) for i in self.ids], np.int64)

    def _set_torque(self, on: bool) -> None:
        self._write_each(int(XAddr.TORQUE_ENABLE), 1, {i: int(on) for i in self.ids},
                         "enabling torque" if on else "disabling torque")

    def _goal_to_present(self) -> np.ndarray:
        """Set every goal to the present position (clamped into the limits); returns the goal ticks."""
        present = self._present_ticks()
        goal = np.clip(present, self.tick_low, self.tick_high)
        outside = [self.joint_names[i] for i in np.flatnonzero(goal != present)]
        if outside:
            log.warning("%s: joints %s are outside their limits; they will move to the nearest limit at up to "
                        "velocity_limit when torque is on", self.name, outside)
        self._sync_write(int(XAddr.GOAL_POSITION), 4, dict(zip(self.ids, map(int, goal))), "setting goals")
        return goal

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        if not self._modes.closed:
            return
        link = SerialLink(self.serial_config, dxl.DynamixelFramer())
        link.open()
        self.link = link
        self._modes.mode = "hold"   # internal: allow bus helpers during bring-up
        try:
            self._bring_up()
        except BaseException:
            self._modes.close()
            self.link = None
            link.close()
            raise
        self._seen_reconnects = link.counters["reconnects"]
        self._modes.activate()

    def _bring_up(self) -> None:
        link = self.link
        assert link is not None
        missing, self.models = [], {}
        for servo_id in self.ids:
            try:
                frame = link.transact(dxl.ping_packet(servo_id))
            except NoReplyError:
                missing.append(servo_id)
                continue
            self.models[servo_id], _ = dxl.parse_ping(dxl.decode_status(frame))
        if missing:
            found = [i for i in self.ids if i not in missing]
            raise DriverError(f"{self.name}: no answer from servo id(s) {self._joints(missing)} on {link.where} "
                              f"(answered: {found or 'none'}); check their ids, that the bus is powered and wired, and "
                              f"the baudrate ({link.config.baudrate})"
                              + ("; no servo answered at all: most likely the baudrate or the power" if not found
                                 else ""))
        # EEPROM settings: write only what differs (EEPROM wears, and writing needs torque off).
        mode = dxl.OPERATING_MODE_POSITION if self.current_limit is None else dxl.OPERATING_MODE_CURRENT_POSITION
        want = {int(XAddr.OPERATING_MODE): (1, {i: mode for i in self.ids}),
                int(XAddr.MAX_POSITION_LIMIT): (4, dict(zip(self.ids, map(int, self.tick_high)))),
                int(XAddr.MIN_POSITION_LIMIT): (4, dict(zip(self.ids, map(int, self.tick_low))))}
        have = {addr: self._read_each(addr, size, "reading settings") for addr, (size, _) in want.items()}
        changes = {addr: {i: v for i, v in values.items() if have[addr][i] != v}
                   for addr, (_, values) in want.items()}
        to_change = sorted({i for values in changes.values() for i in values})
        if to_change:
            torque = self._read_each(int(XAddr.TORQUE_ENABLE), 1, "reading torque")
            on = {i: 0 for i in to_change if torque[i]}
            if on:
                log.warning("%s: switching torque off on %s to program their settings", self.name, self._joints(on))
                self._write_each(int(XAddr.TORQUE_ENABLE), 1, on, "disabling torque")
            for addr, values in changes.items():
                if values:
                    self._write_each(addr, want[addr][0], values, "programming settings")
        velocity = {i: max(1, int(v / VELOCITY_UNIT_RAD_S)) for i, v in zip(self.ids, self.velocity_limit)}
        self._write_each(int(XAddr.PROFILE_VELOCITY), 4, velocity, "setting the profile velocity")
        if self.current_limit is not None:
            current = {i: max(1, int(c / CURRENT_UNIT_A)) for i, c in zip(self.ids, self.current_limit)}
            self._write_each(int(XAddr.GOAL_CURRENT), 2, current, "setting the current limit")
        self._goal_to_present()
        self._set_torque(True)

    def close(self) -> None:
        if self._modes.closed:
            return
        link = self.link
        try:
            self._sync_write(int(XAddr.TORQUE_ENABLE), 1, {i: 0 for i in self.ids}, "disabling torque")
        except DriverError as exc:  # the port may be gone; releasing it matters more
            log.warning("%s: could not switch torque off while closing: %s", self.name, exc)
        self._modes.close()
        self.link = None
        if link is not None:
            link.close()

    def now(self) -> float:
        return time.monotonic()

    # -- sensing --------------------------------------------------------------------------

    def read(self) -> SensorSample:
        self._link("read()")
        start = time.monotonic()
        try:
            statuses = self._sync_read(STATE_ADDR, STATE_LEN, "the state SYNC_READ")
        except DriverError:
            self.counters["read_errors"] += 1
            raise
        stamp = (start + time.monotonic()) / 2    # the servos sampled somewhere in the round trip
        self._check_reconnect()
        raw = np.array([[dxl.from_bytes(statuses[i].params[0:2]), dxl.from_bytes(statuses[i].params[2:6]),
                         dxl.from_bytes(statuses[i].params[6:10])] for i in self.ids], np.float64)
        alerts = [i for i in self.ids if statuses[i].alert]
        if alerts:
            self._note_alerts(alerts)
        elif self._alerts:
            self._alerts.clear()
        current = self._sign * raw[:, 0] * CURRENT_UNIT_A
        values = {"joint_position": self.ticks_to_rad(raw[:, 2]).astype(np.float32),
                  "joint_velocity": (self._sign * raw[:, 1] * VELOCITY_UNIT_RAD_S).astype(np.float32),
                  "joint_current": current.astype(np.float32)}
        if self.torque_constant is not None:
            values["joint_torque"] = (current * np.array(self.torque_constant)).astype(np.float32)
        self.counters["reads"] += 1
        return SensorSample(stamp=stamp, values=values)

    def _note_alerts(self, ids: list[int]) -> None:
        new = [i for i in ids if i not in self._alerts]
        if not new:
            return
        self.counters["hardware_alerts"] += len(new)
        for servo_id in new:
            try:
                packet = dxl.read_packet(servo_id, int(XAddr.HARDWARE_ERROR_STATUS), 1)
                frame = self._exchange(packet, "reading alerts")[servo_id]
                bits = dxl.parse_read(dxl.decode_status(frame), 1, "reading alerts")[0]
                what = ", ".join(name for bit, name in HARDWARE_ERRORS.items() if bits & (1 << bit)) or "unknown"
            except DriverError:
                what = "unknown (Hardware Error Status unreadable)"
            self._alerts[servo_id] = what
            log.error("%s: servo %s reports a hardware error: %s", self.name, self._joints([servo_id]), what)

    def _check_reconnect(self) -> None:
        """After the port came back, make sure the servos still have the torque state we left them in."""
        link = self.link
        if link is None or link.counters["reconnects"] == self._seen_reconnects:
            return
        self._seen_reconnects = link.counters["reconnects"]
        if self._modes.mode == "damping":
            return
        statuses = self._sync_read(int(XAddr.TORQUE_ENABLE), 1, "checking torque after a reconnect")
        lost = [i for i in self.ids if not statuses[i].params[0]]
        if lost:
            self.counters["torque_lost"] += 1
            reason = (f"servo(s) {self._joints(lost)} lost torque while {link.where} was disconnected (power cycled?)")
            self.safe_mode("damping", reason)
            raise DriverError(f"{self.name}: {reason}; the arm is now limp (damping); call resume() to re-enable "
                              "torque from the present position")
        log.info("%s: reconnected to %s; servos kept their torque", self.name, link.where)

    # -- commands and safe modes ----------------------------------------------------------

    def write(self, command: Command) -> None:
        self._link("write()")
        position = np.asarray(command.position, np.float64)
        n = len(self.ids)
        if position.shape != (n,):
            raise DriverError(f"{self.name}: command has shape {position.shape}; it needs one target per joint, "
                              f"shape ({n},), in the order {list(self.joint_names)}")
        if not np.all(np.isfinite(position)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(position))]
            raise DriverError(f"{self.name}: command is not finite at {bad}; send finite joint targets in rad")
        if not self._modes.accepts_command():
            return
        clamped = np.clip(position, self._low_arr, self._high_arr)
        if np.any(clamped != position):   # the safety layer should have clamped; never leave the limits
            self.counters["clamped_commands"] += 1
        ticks = self.rad_to_ticks(clamped)
        try:
            self._sync_write(int(XAddr.GOAL_POSITION), 4, dict(zip(self.ids, map(int, ticks))), "the goal SYNC_WRITE")
        except DriverError:
            self.counters["write_errors"] += 1
            raise
        self.counters["writes"] += 1
        self._check_reconnect()

    def safe_mode(self, mode: SafeMode, reason: str = "") -> None:
        self._link("safe_mode()")
        # Enter the mode first, so commands are ignored even if the bus fails below.
        previous = self._modes.enter(mode, reason)
        if mode == "damping":
            self._set_torque(False)
        else:
            self._goal_to_present()
            if previous == "damping":
                self._set_torque(True)

    def resume(self) -> None:
        self._link("resume()")
        if self._modes.mode == "damping":
            # Limp joints may have moved: start from where they are, then hold them.
            self._goal_to_present()
            self._set_torque(True)
        self._modes.leave()

    # -- health ---------------------------------------------------------------------------

    def health(self) -> Health:
        details: dict[str, Any] = {**self.counters, "ids": list(self.ids)}
        if self.link is not None:
            details.update({f"link_{k}": v for k, v in self.link.counters.items()})
            details["device"] = self.link.device
        if self.models:
            details["models"] = dict(self.models)
        if self._modes.closed:
            return Health(ok=False, mode="closed", message="closed; call open()", details=details)
        problems = [m for m in (self._error,) if m]
        if self._alerts:
            problems.append("hardware error on servo(s) " + "; ".join(f"{self._joints([i])}: {w}"
                                                                      for i, w in self._alerts.items())
                            + " (reboot the servo or power-cycle to clear)")
        message = "; ".join(([self._modes.message] if self._modes.message else []) + problems)
        return Health(ok=not problems, mode=self._modes.mode, message=message, details=details)
