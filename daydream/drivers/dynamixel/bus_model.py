"""The device side of an emulated Dynamixel bus, without any I/O: `ServoModel` (one X-series servo:
control table, access rules, first-order joint dynamics) and `BusModel` (servos on one bus answering
Protocol 2.0 ping/read/write/sync read/sync write with correct status packets). The emulator process
(`emulator.py`) serves a `BusModel` on a pty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from daydream.drivers.dynamixel.protocol import (ALERT_BIT, BROADCAST_ID, OPERATING_MODE_CURRENT_POSITION,
                                                 OPERATING_MODE_POSITION, X_SIZES, Instruction, Packet, XAddr,
                                                 encode_status, from_bytes, to_bytes)


TICKS_PER_REV = 4096
VELOCITY_UNIT_RPM = 0.229
TABLE_SIZE = 256
EEPROM_END = 64                       # addresses below are EEPROM: writable only with torque off

# Writable registers (address -> size); every other byte is read-only (or unimplemented).
WRITABLE = {XAddr.RETURN_DELAY_TIME: 1, XAddr.OPERATING_MODE: 1, XAddr.CURRENT_LIMIT: 2, XAddr.VELOCITY_LIMIT: 4,
            XAddr.MAX_POSITION_LIMIT: 4, XAddr.MIN_POSITION_LIMIT: 4, XAddr.TORQUE_ENABLE: 1, 65: 1,
            XAddr.STATUS_RETURN_LEVEL: 1, XAddr.GOAL_CURRENT: 2, 104: 4, 108: 4, XAddr.PROFILE_VELOCITY: 4,
            XAddr.GOAL_POSITION: 4}
_WRITABLE_BYTES = {a + i for a, n in WRITABLE.items() for i in range(n)}

ERR_DATA_LENGTH = 0x05
ERR_DATA_LIMIT = 0x06
ERR_ACCESS = 0x07
ERR_INSTRUCTION = 0x02


def ticks_per_s(velocity_units: float) -> float:
    """Velocity register units (0.229 rpm) -> encoder ticks per second."""
    return velocity_units * VELOCITY_UNIT_RPM / 60.0 * TICKS_PER_REV


class ServoModel:
    """One X-series servo: control table, access rules and joint dynamics (all in register units).

    Dynamics: with torque on, the joint approaches the goal as a first-order lag with time
    constant `tau_s`, its speed capped by Profile Velocity (or Velocity Limit when that is 0).
    With torque off it stays where it is (no gravity in the model). Present Current is
    proportional to the position error, bounded by Current Limit (and by Goal Current in
    current-based position mode).
    """

    def __init__(self, servo_id: int, position: int = 2048, model_number: int = 1030, firmware: int = 45,
                 tau_s: float = 0.05) -> None:
        self.id = servo_id
        self.tau_s = tau_s
        self.table = bytearray(TABLE_SIZE)
        self._set(XAddr.MODEL_NUMBER, model_number)
        self._set(XAddr.FIRMWARE_VERSION, firmware)
        self._set(XAddr.ID, servo_id)
        self._set(XAddr.BAUD_RATE, 3)                  # 1 Mbps
        self._set(XAddr.RETURN_DELAY_TIME, 250)
        self._set(XAddr.OPERATING_MODE, OPERATING_MODE_POSITION)
        self._set(XAddr.CURRENT_LIMIT, 1193)
        self._set(XAddr.VELOCITY_LIMIT, 265)
        self._set(XAddr.MAX_POSITION_LIMIT, TICKS_PER_REV - 1)
        self._set(XAddr.MIN_POSITION_LIMIT, 0)
        self._set(XAddr.STATUS_RETURN_LEVEL, 2)
        self._set(XAddr.GOAL_CURRENT, 1193)
        self.position = float(position)                # ticks
        self.velocity = 0.0                            # ticks/s
        self.current = 0.0                             # current units (2.69 mA)
        self._set(XAddr.GOAL_POSITION, int(round(position)))
        self._sync_present()

    # -- registers --------------------------------------------------------------------------

    def _set(self, addr: int, value: int) -> None:
        size = _SIZES[addr]
        self.table[addr:addr + size] = to_bytes(int(value), size, signed=addr in _SIGNED)

    def get(self, addr: int) -> int:
        size = _SIZES[addr]
        return from_bytes(bytes(self.table[addr:addr + size]), signed=addr in _SIGNED)

    @property
    def torque(self) -> bool:
        return bool(self.table[XAddr.TORQUE_ENABLE])

    def _sync_present(self) -> None:
        self._set(XAddr.PRESENT_POSITION, int(round(self.position)))
        rpm = self.velocity / TICKS_PER_REV * 60.0
        self._set(XAddr.PRESENT_VELOCITY, int(round(rpm / VELOCITY_UNIT_RPM)))
        self._set(XAddr.PRESENT_CURRENT, int(round(self.current)))

    def read(self, addr: int, length: int) -> tuple[int, bytes]:
        """(error code, data) of a read."""
        if length <= 0 or addr < 0 or addr + length > TABLE_SIZE:
            return ERR_ACCESS, b""
        return 0, bytes(self.table[addr:addr + length])

    def write(self, addr: int, data: bytes) -> int:
        """Apply a write; returns the status error code (0: done)."""
        if not data or addr < 0 or addr + len(data) > TABLE_SIZE:
            return ERR_ACCESS
        span = range(addr, addr + len(data))
        if any(a not in _WRITABLE_BYTES for a in span):
            return ERR_ACCESS
        if addr < EEPROM_END and self.torque:
            return ERR_ACCESS                          # EEPROM is locked while torque is on
        trial = bytearray(self.table)
        trial[addr:addr + len(data)] = data
        goal = from_bytes(bytes(trial[XAddr.GOAL_POSITION:XAddr.GOAL_POSITION + 4]), True)
        position_mode = trial[XAddr.OPERATING_MODE] in (OPERATING_MODE_POSITION, OPERATING_MODE_CURRENT_POSITION)
        if position_mode and (XAddr.GOAL_POSITION in span or XAddr.GOAL_POSITION + 3 in span):
            low = from_bytes(bytes(trial[XAddr.MIN_POSITION_LIMIT:XAddr.MIN_POSITION_LIMIT + 4]), True)
            high = from_bytes(bytes(trial[XAddr.MAX_POSITION_LIMIT:XAddr.MAX_POSITION_LIMIT + 4]), True)
            if not low <= goal <= high:
                return ERR_DATA_LIMIT                  # position mode refuses goals outside the limits
        if XAddr.OPERATING_MODE in span and trial[XAddr.OPERATING_MODE] not in (0, 1, 3, 4, 5, 16):
            return ERR_DATA_LIMIT
        was_on = self.torque
        self.table[:] = trial
        if not was_on and self.torque:
            # The model starts tracking from rest.
            self.velocity = 0.0
        return 0

    # -- dynamics ---------------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        if dt <= 0:
            return
        if not self.torque:
            self.velocity = 0.0
            self.current = 0.0
            self._sync_present()
            return
        goal = float(self.get(XAddr.GOAL_POSITION))
        profile = self.get(XAddr.PROFILE_VELOCITY)
        vmax = ticks_per_s(profile if profile > 0 else self.get(XAddr.VELOCITY_LIMIT)) or 1e9
        tau = self.tau_s
        error = goal - self.position
        sign = 1.0 if error >= 0 else -1.0
        if abs(error) > vmax * tau:                    # speed-capped: move linearly first
            t_linear = (abs(error) - vmax * tau) / vmax
            if dt <= t_linear:
                self.position += sign * vmax * dt
                self.velocity = sign * vmax
                self._update_current(goal)
                return
            dt -= t_linear
            error = sign * vmax * tau
            self.position = goal - error
        decay = math.exp(-dt / tau)
        self.position = goal - error * decay
        self.velocity = error * decay / tau
        self._update_current(goal)

    def _update_current(self, goal: float) -> None:
        limit = self.get(XAddr.CURRENT_LIMIT)
        if self.table[XAddr.OPERATING_MODE] == OPERATING_MODE_CURRENT_POSITION:
            limit = min(limit, abs(self.get(XAddr.GOAL_CURRENT)))
        self.current = max(-limit, min(limit, 0.5 * (goal - self.position)))
        self._sync_present()

    def power_cycle(self) -> None:
        """Power lost and back: torque off, RAM reset (goal = present position)."""
        self.table[XAddr.TORQUE_ENABLE] = 0
        self._set(XAddr.PROFILE_VELOCITY, 0)
        self._set(XAddr.GOAL_POSITION, int(round(self.position)))
        self._set(XAddr.HARDWARE_ERROR_STATUS, 0)
        self.velocity = self.current = 0.0
        self._sync_present()


_SIZES: dict[int, int] = {int(a): n for a, n in X_SIZES.items()}
_SIGNED = {XAddr.GOAL_CURRENT, XAddr.GOAL_POSITION, XAddr.PRESENT_CURRENT, XAddr.PRESENT_VELOCITY,
           XAddr.PRESENT_POSITION, XAddr.MAX_POSITION_LIMIT, XAddr.MIN_POSITION_LIMIT}


class BusModel:
    """Servos on one bus: turns instruction packets into status packets, and records goals."""

    def __init__(self, servos: Iterable[ServoModel]) -> None:
        self.servos = {s.id: s for s in servos}
        self.goals: list[tuple[int, int]] = []         # (servo id, goal ticks) in arrival order
        self._time: float | None = None

    def advance_to(self, now: float) -> None:
        if self._time is not None:
            for servo in self.servos.values():
                servo.advance(now - self._time)
        self._time = now

    def _status(self, servo: ServoModel, error: int, params: bytes = b"") -> bytes:
        if servo.get(XAddr.HARDWARE_ERROR_STATUS):
            error |= ALERT_BIT
        return encode_status(servo.id, error, params)

    def _record_goal(self, servo_id: int, addr: int, data: bytes) -> None:
        goal = int(XAddr.GOAL_POSITION)
        if addr <= goal and addr + len(data) >= goal + 4:
            self.goals.append((servo_id, from_bytes(data[goal - addr:goal - addr + 4], True)))

    def handle(self, packet: Packet) -> list[bytes]:
        """The status packets answering `packet` (in bus order), applying its effects."""
        ins, p = packet.instruction, packet.params
        targets = ([self.servos[packet.id]] if packet.id in self.servos
                   else sorted(self.servos.values(), key=lambda s: s.id) if packet.id == BROADCAST_ID else [])
        if ins == Instruction.PING:
            return [self._status(s, 0, to_bytes(s.get(XAddr.MODEL_NUMBER), 2, False)
                                 + bytes([s.get(XAddr.FIRMWARE_VERSION)])) for s in targets]
        if ins == Instruction.READ:
            if packet.id == BROADCAST_ID or not targets:
                return []
            servo = targets[0]
            if len(p) != 4:
                return [self._status(servo, ERR_DATA_LENGTH)]
            error, data = servo.read(from_bytes(p[:2], False), from_bytes(p[2:4], False))
            return [self._status(servo, error, data)]
        if ins == Instruction.WRITE:
            if len(p) < 3:
                return [self._status(s, ERR_DATA_LENGTH) for s in targets if packet.id != BROADCAST_ID]
            addr = from_bytes(p[:2], False)
            replies = []
            for servo in targets:
                self._record_goal(servo.id, addr, p[2:])
                error = servo.write(addr, p[2:])
                if packet.id != BROADCAST_ID:   # broadcast instructions get no status
                    replies.append(self._status(servo, error))
            return replies
        if ins == Instruction.SYNC_READ and packet.id == BROADCAST_ID and len(p) >= 5:
            addr, length = from_bytes(p[:2], False), from_bytes(p[2:4], False)
            replies = []
            for servo_id in p[4:]:
                servo = self.servos.get(servo_id)
                if servo is not None:
                    error, data = servo.read(addr, length)
                    replies.append(self._status(servo, error, data))
            return replies
        if ins == Instruction.SYNC_WRITE and packet.id == BROADCAST_ID and len(p) >= 4:
            addr, length = from_bytes(p[:2], False), from_bytes(p[2:4], False)
            body = p[4:]
            if length == 0 or len(body) % (length + 1):
                return []
            for i in range(0, len(body), length + 1):
                servo_id, data = body[i], body[i + 1:i + 1 + length]
                self._record_goal(servo_id, addr, data)
                if servo_id in self.servos:
                    self.servos[servo_id].write(addr, data)
            return []
        if packet.id == BROADCAST_ID or not targets:
            return []
        return [self._status(targets[0], ERR_INSTRUCTION)]

    def state(self) -> dict[str, Any]:
        return {str(s.id): {"position": s.position, "velocity": s.velocity, "current": s.current,
                            "goal": s.get(XAddr.GOAL_POSITION), "torque": s.torque,
                            "mode": s.table[XAddr.OPERATING_MODE], "profile_velocity": s.get(XAddr.PROFILE_VELOCITY),
                            "goal_current": s.get(XAddr.GOAL_CURRENT),
                            "min_limit": s.get(XAddr.MIN_POSITION_LIMIT), "max_limit": s.get(XAddr.MAX_POSITION_LIMIT)}
                for s in self.servos.values()}
