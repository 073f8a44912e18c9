"""An emulated Dynamixel bus on a pseudo-terminal, for tests and benchmarks without hardware.

This module owns the process side of the serial tests: the emulator process that serves a
`BusModel` (`bus_model.py`: the servos and their Protocol 2.0 answers) on a pty, and `EmulatedBus`,
the context manager tests use to start and steer it.
"""

from __future__ import annotations

import json
import logging
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

from daydream.drivers.dynamixel.bus_model import BusModel, ServoModel
from daydream.drivers.dynamixel.protocol import DynamixelFramer, Instruction, decode_packet

log = logging.getLogger(__name__)

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
    the first request.

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
