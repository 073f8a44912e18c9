"""An emulated Dynamixel bus on a pseudo-terminal, for tests and benchmarks without hardware.

This module owns the device side of the serial tests: `ServoModel` (one X-series servo: control
table, access rules, first-order joint dynamics), `BusModel` (servos on one bus answering Protocol
2.0 ping/read/write/sync read/sync write with correct status packets), the emulator process that
serves a bus on a pty, and `EmulatedBus`, the context manager tests use to start and steer it.

**The pty.** The emulator process calls `os.openpty()` and keeps the *master* end: it is the
device. The *slave* end (`/dev/pts/N`) is what a driver opens with pyserial, exactly like a
`/dev/ttyUSB0`, so the driver's real pyserial code path is exercised. Drivers are given a stable
symlink to it (`EmulatedBus.port`, in a temporary directory), as udev's `/dev/serial/by-id/` links
are for real adapters. The emulator also keeps a slave descriptor of its own open, so a driver
closing and reopening the port does not hang up the master.

**Faults** (set at start with `faults=` or at any time with `EmulatedBus.inject`):

* `drop`: the next N status packets each lose one byte (the middle one);
* `corrupt`: the next N status packets carry a wrong CRC;
* `delay_s` (+ `delay_count`, -1: until changed): status packets leave this much later;
* `silent_s`: for this long the bus swallows every request and answers nothing (a device that
  does not answer: unpowered servos, wrong baudrate);
* `unplug(seconds)`: the adapter is unplugged: the symlink is removed, the pty master closed (the
  driver's open port hangs up: its reads and writes fail as with a vanished `/dev/ttyUSB0`), and
  after `seconds` (or on `replug()`) a *new* pty is created and the symlink points at it, as a
  replugged adapter reappears (often under another /dev name) behind its by-id link. The servos
  stay powered, so their state is kept;
* `power_cycle()`: the servos lose power: torque off, goals reset to the present positions.

Every goal position the bus receives (WRITE or SYNC_WRITE touching address 116) is recorded with
its servo id, whether the servo accepted it or not, so tests can check that nothing outside the
configured limits ever reached the bus (`EmulatedBus.goals()`).

The emulator process is `python -m daydream.drivers.dynamixel.emulator CONFIG_JSON`; it speaks
JSON lines on stdin/stdout (commands and acknowledgements) and exits when stdin closes, so it never
outlives the test that started it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import tty
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from daydream.drivers.dynamixel.protocol import (ALERT_BIT, BROADCAST_ID, OPERATING_MODE_CURRENT_POSITION,
                                                 OPERATING_MODE_POSITION, X_SIZES, DynamixelFramer, Instruction,
                                                 Packet, XAddr, decode_packet, encode_status, from_bytes, to_bytes)

log = logging.getLogger(__name__)

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


# -- the emulator process -------------------------------------------------------------------

class _Emulator:
    """The process side: a BusModel behind a pty, with faults and a JSON-lines control channel."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        positions = config.get("positions") or {}
        self.bus = BusModel(ServoModel(int(i), position=int(positions.get(str(i), 2048)),
                                       model_number=int(config.get("model_number", 1030)),
                                       tau_s=float(config.get("tau_s", 0.05))) for i in config["ids"])
        self.link = Path(config["link"])
        self.framer = DynamixelFramer()
        self.master: int | None = None
        self.own_slave: int | None = None
        self.device = ""
        self.inbox = bytearray()
        self.outbox: list[tuple[float, bytes]] = []
        self.faults: dict[str, Any] = {"drop": 0, "corrupt": 0, "delay_s": 0.0, "delay_count": 0, "silent_until": 0.0}
        self.replug_at: float | None = None
        self.stats = {"requests": 0, "replies": 0, "dropped": 0, "corrupted": 0, "delayed": 0, "swallowed": 0,
                      "unplugs": 0, "bad_requests": 0}
        self.set_faults(config.get("faults") or {})

    # -- the pty ----------------------------------------------------------------------------

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)          # no echo, no line editing: a serial device, not a terminal
        os.set_blocking(master, False)
        self.master, self.own_slave, self.device = master, slave, os.ttyname(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(self.device, tmp)
        os.replace(tmp, self.link)  # atomic: the link never points at a half-made device
        self.replug_at = None

    def unplug(self, seconds: float | None) -> None:
        if self.master is None:
            return
        if self.link.is_symlink():
            self.link.unlink()     # first, so no reconnect attempt finds the dying pty
        for fd in (self.master, self.own_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master = self.own_slave = None
        self.inbox.clear()
        self.outbox.clear()
        self.stats["unplugs"] += 1
        self.replug_at = None if seconds is None else time.monotonic() + seconds

    # -- faults -----------------------------------------------------------------------------

    def set_faults(self, faults: Mapping[str, Any]) -> None:
        for key, value in faults.items():
            if key == "silent_s":
                self.faults["silent_until"] = time.monotonic() + float(value)
            elif key in ("drop", "corrupt", "delay_count"):
                self.faults[key] = int(value)
            elif key == "delay_s":
                self.faults["delay_s"] = float(value)
                self.faults.setdefault("delay_count", -1)
            else:
                raise ValueError(f"unknown fault {key!r}; use drop, corrupt, delay_s, delay_count, silent_s")
        if "delay_s" in faults and "delay_count" not in faults:
            self.faults["delay_count"] = -1

    def _apply_faults(self, reply: bytes, now: float) -> tuple[float, bytes]:
        due = now
        if self.faults["drop"] > 0:
            self.faults["drop"] -= 1
            self.stats["dropped"] += 1
            mid = len(reply) // 2
            reply = reply[:mid] + reply[mid + 1:]
        elif self.faults["corrupt"] > 0:
            self.faults["corrupt"] -= 1
            self.stats["corrupted"] += 1
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        if self.faults["delay_s"] > 0 and self.faults["delay_count"] != 0:
            if self.faults["delay_count"] > 0:
                self.faults["delay_count"] -= 1
            self.stats["delayed"] += 1
            due = now + self.faults["delay_s"]
        return due, reply

    # -- serving ----------------------------------------------------------------------------

    def serve_input(self, now: float) -> None:
        assert self.master is not None
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:            # no slave open right now (cannot happen while we hold one): wait
            return
        if now < self.faults["silent_until"]:
            self.stats["swallowed"] += 1
            return
        self.inbox += data
        while True:
            found = self.framer.extract(self.inbox)
            self.stats["bad_requests"] += found.bad_frames
            if found.frame is None:
                return
            packet = decode_packet(found.frame)
            if packet.instruction == Instruction.STATUS:
                continue           # our own replies never come back on a pty; ignore anything odd
            self.stats["requests"] += 1
            self.bus.advance_to(now)
            replies = self.bus.handle(packet)
            for reply in replies:
                due, wire = self._apply_faults(reply, now)
                if self.outbox:
                    due = max(due, self.outbox[-1][0])   # one bus: replies leave in order
                self.outbox.append((due, wire))

    def flush_outbox(self, now: float) -> None:
        due = []
        while self.outbox and self.outbox[0][0] <= now:
            due.append(self.outbox.pop(0)[1])
        if not due or self.master is None:
            return
        try:
            os.write(self.master, b"".join(due))   # one write: the replies of a sync read arrive back to back
            self.stats["replies"] += len(due)
        except OSError as exc:
            log.warning("emulator: writing replies failed: %s", exc)

    def command(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        cmd = msg.get("cmd")
        now = time.monotonic()
        self.bus.advance_to(now)
        if cmd == "fault":
            self.set_faults(msg.get("faults", {}))
        elif cmd == "unplug":
            self.unplug(msg.get("seconds"))
        elif cmd == "replug":
            if self.master is None:
                self.plug()
        elif cmd == "power_cycle":
            for servo in self.bus.servos.values():
                servo.power_cycle()
        elif cmd == "move":     # a hand pushes a (limp) joint
            servo = self.bus.servos[int(msg["id"])]
            servo.position = float(msg["ticks"])
            servo._sync_present()
        elif cmd == "set":      # poke a register, e.g. HARDWARE_ERROR_STATUS
            self.bus.servos[int(msg["id"])]._set(int(msg["addr"]), int(msg["value"]))
        elif cmd == "goals":
            return {"ok": True, "goals": self.bus.goals}
        elif cmd == "state":
            return {"ok": True, "servos": self.bus.state(), "stats": self.stats, "device": self.device,
                    "plugged": self.master is not None}
        elif cmd == "quit":
            return {"ok": True, "quit": True}
        else:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        return {"ok": True, "device": self.device, "plugged": self.master is not None}

    def run(self) -> None:
        self.plug()
        _send({"ready": True, "port": str(self.link), "device": self.device})
        stdin = sys.stdin.fileno()
        pending = b""
        while True:
            now = time.monotonic()
            if self.replug_at is not None and now >= self.replug_at:
                self.plug()
            waits = [t for t in (self.outbox[0][0] if self.outbox else None, self.replug_at) if t is not None]
            timeout = max(0.0, min(waits) - now) if waits else 1.0
            fds = [stdin] + ([self.master] if self.master is not None else [])
            ready, _, _ = select.select(fds, [], [], timeout)
            now = time.monotonic()
            if self.master is not None and self.master in ready:
                self.serve_input(now)
            self.flush_outbox(time.monotonic())
            if stdin in ready:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    return              # the test (or benchmark) went away
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        reply = self.command(json.loads(line))
                    except Exception as exc:  # a bad command must not kill the bus; report it
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    _send(reply)
                    if reply.get("quit"):
                        return

    def shutdown(self) -> None:
        self.unplug(None)


def _send(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m daydream.drivers.dynamixel.emulator CONFIG_JSON "
                         '(e.g. \'{"ids": [1, 2], "link": "/tmp/ttyDXL"}\')')
    logging.basicConfig(level=logging.WARNING, format="emulator: %(message)s")
    emulator = _Emulator(json.loads(args[0]))
    try:
        emulator.run()
    finally:
        emulator.shutdown()


# -- the test side --------------------------------------------------------------------------

class EmulatedBus:
    """Start an emulated servo bus in its own process; `port` is the path a driver opens.

        with EmulatedBus(ids=[1, 2, 3, 4]) as bus:
            arm = DynamixelArm(ids=[1, 2, 3, 4], port=bus.port, ...)
            bus.inject(corrupt=1)
            ...
            assert all(low <= g <= high for _, g in bus.goals())

    `positions` maps servo id -> initial position in ticks (2048 = 0 rad); `faults` are set before
    the first request (see the module docstring for the fault names).
    """

    def __init__(self, ids: Iterable[int] = (1, 2, 3, 4), positions: Mapping[int, int] | None = None,
                 faults: Mapping[str, Any] | None = None, model_number: int = 1030, tau_s: float = 0.05,
                 start_timeout_s: float = 30.0) -> None:
        self.ids = [int(i) for i in ids]
        self.positions = {str(k): int(v) for k, v in (positions or {}).items()}
        self.faults = dict(faults or {})
        self.model_number = model_number
        self.tau_s = tau_s
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self._dir: str | None = None
        self._pending = b""
        self.port = ""
        self.device = ""

    def __enter__(self) -> "EmulatedBus":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="dxl-emulator-")
        link = os.path.join(self._dir, "ttyDXL0")
        config = {"ids": self.ids, "link": link, "positions": self.positions, "faults": self.faults,
                  "model_number": self.model_number, "tau_s": self.tau_s}
        root = str(Path(__file__).resolve().parents[3])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen([sys.executable, "-m", "daydream.drivers.dynamixel.emulator",
                                         json.dumps(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env=env, bufsize=0)
        try:
            hello = self._read_reply(self.start_timeout_s)
        except Exception:
            self.stop()
            raise
        self.port, self.device = hello["port"], hello["device"]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            try:
                process.stdin.write(b'{"cmd": "quit"}\n')
                process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _read_reply(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"the bus emulator did not answer within {timeout:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the bus emulator exited (code {self.process.wait()}); see its stderr")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def command(self, cmd: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send one control command and return the emulator's acknowledgement."""
        if self.process is None:
            raise RuntimeError("the bus emulator is not running; use `with EmulatedBus(...)`")
        self.process.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        reply = self._read_reply(timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"bus emulator refused {cmd}: {reply.get('error')}")
        if "device" in reply and reply["device"]:
            self.device = reply["device"]
        return reply

    def inject(self, **faults: Any) -> None:
        """Set faults now: drop=N, corrupt=N, delay_s=S (delay_count=N, -1 for all), silent_s=S."""
        self.command("fault", faults=faults)

    def unplug(self, seconds: float | None = None) -> None:
        """Unplug the adapter; it comes back (as a new pty) after `seconds`, or on `replug()`."""
        self.command("unplug", seconds=seconds)

    def replug(self) -> None:
        self.command("replug")

    def power_cycle(self) -> None:
        self.command("power_cycle")

    def move(self, servo_id: int, ticks: float) -> None:
        """Move a joint as a hand would (it stays there while torque is off)."""
        self.command("move", id=servo_id, ticks=ticks)

    def set_register(self, servo_id: int, addr: int, value: int) -> None:
        self.command("set", id=servo_id, addr=addr, value=value)

    def goals(self) -> list[tuple[int, int]]:
        """Every goal position (servo id, ticks) the bus received, in order."""
        return [(int(i), int(g)) for i, g in self.command("goals")["goals"]]

    def state(self) -> dict[str, Any]:
        return self.command("state")


if __name__ == "__main__":
    main()
