"""Serial transport for robot drivers: `SerialLink`, request/reply exchanges over pyserial.

This module owns everything between a driver's packets and the serial port:

* **finding and opening the port**, by path (`port`, e.g. `/dev/ttyUSB0` or a stable
  `/dev/serial/by-id/...` link) or by USB vendor/product id (`usb_vid`/`usb_pid`, optionally
  `usb_serial`, looked up with `serial.tools.list_ports`), with an exclusive lock so two programs
  never drive one bus (pyserial's `exclusive=True`: an advisory `flock`, honoured by other pyserial
  users and most serial tools);
* **framing**: a pluggable `Framer` cuts complete, checksum-valid frames out of the byte stream,
  drops garbage and resynchronises after corrupted frames (the Dynamixel one is
  `daydream.drivers.dynamixel.protocol.DynamixelFramer`);
* **exchanges** (`transact`, `exchange`): flush stale input, send one request, collect the
  replies it asks for within `timeout_s`, and retry the whole exchange up to `retries` times on a
  timeout or a corrupted reply;
* **reconnecting**: an error reading or writing the port (the adapter was unplugged) closes it and
  reopens it every `reconnect_interval_s` for up to `reconnect_timeout_s` (re-resolving a USB id,
  since the device may come back under another name), then retries the exchange; if it does not
  come back the exchange fails with `DisconnectedError`, and later exchanges try once more to
  reopen before failing at once;
* **clear errors** (all `DriverError`s): `PortMissingError` lists the ports that exist,
  `PortBusyError` says another program holds the port, `NoReplyError` names the request, which
  devices did not answer and how many tries were made;
* **counters** for health reporting (`SerialLink.counters`).

Timing note: `timeout_s` bounds the wait for each attempt's replies; the port is polled in steps
of at most 10 ms, so an idle wait costs no CPU and a reply is seen as soon as its bytes arrive.
"""

from __future__ import annotations

import abc
import dataclasses
import errno
import logging
import os
import threading
import time
from collections.abc import Hashable, Sequence

import serial
from serial.tools import list_ports

from daydream.drivers.interface import DriverError

log = logging.getLogger(__name__)


# What a vanished device raises: pyserial's errors, plain OS errors, and termios errors (tcflush on a
# hung-up tty raises termios.error, which is not an OSError).
try:
    import termios
    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # not POSIX
    _PORT_ERRORS = (serial.SerialException, OSError)


class PortMissingError(DriverError):
    """The serial port (or USB device) does not exist."""


class PortBusyError(DriverError):
    """Another program (or another link in this one) has the port open."""


class NoReplyError(DriverError):
    """The device did not answer a request with valid replies, after every retry."""

    def __init__(self, message: str, missing: tuple[Hashable, ...], received: dict[Hashable, bytes],
                 attempts: int, corrupted: int = 0) -> None:
        super().__init__(message)
        self.missing = missing        # keys (e.g. servo ids) without a valid reply in the last attempt
        self.received = received      # the valid replies of the last attempt
        self.attempts = attempts
        self.corrupted = corrupted    # frames dropped for bad checksums during this exchange


class DisconnectedError(DriverError):
    """The port failed (device unplugged) and did not come back within the reconnect timeout."""


@dataclasses.dataclass(frozen=True)
class Extracted:
    """What `Framer.extract` found at the front of a receive buffer."""

    frame: bytes | None      # one complete frame with a valid checksum, removed from the buffer
    garbage: int = 0         # bytes dropped before a header
    bad_frames: int = 0      # frames dropped for a bad checksum or an impossible length
    wanted: int = 1          # when frame is None: bytes still needed at least


class Framer(abc.ABC):
    """A protocol's framing rules, so `SerialLink` can find replies in a byte stream."""

    name = "frames"

    @abc.abstractmethod
    def extract(self, buffer: bytearray) -> Extracted:
        """Remove and return the first valid frame of `buffer` (dropping garbage and corrupted frames)."""

    @abc.abstractmethod
    def expected_replies(self, request: bytes) -> tuple[Hashable, ...]:
        """Keys of the replies `request` asks for (e.g. servo ids); empty if it asks for none."""

    @abc.abstractmethod
    def reply_key(self, request: bytes, frame: bytes) -> Hashable | None:
        """The key of `frame` if it answers `request`, else None (a stray frame, ignored)."""

    def describe(self, request: bytes) -> str:
        """`request` in words, for error messages."""
        return f"a {len(request)}-byte request"


def _usb_id(value: int | str | None, what: str) -> int | None:
    """A USB id from a config: an int, or hex text such as "0403" or "0x0403"."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise DriverError(f"{what} must be a USB id (an integer, or hex text like '0403'), got {value!r}")


@dataclasses.dataclass(frozen=True)
class SerialConfig:
    """Where the device is and how patiently to talk to it."""

    port: str | None = None              # device path; or leave None and give usb_vid/usb_pid
    usb_vid: int | str | None = None     # USB vendor id (e.g. 0x0403 for FTDI, as the ROBOTIS U2D2)
    usb_pid: int | str | None = None     # USB product id (e.g. 0x6014 for the U2D2)
    usb_serial: str | None = None        # USB serial number, to choose among several equal adapters
    baudrate: int = 1_000_000
    timeout_s: float = 0.05              # wait for one attempt's replies
    retries: int = 2                     # further attempts after the first
    reconnect_interval_s: float = 0.2    # after a port error: try to reopen this often
    reconnect_timeout_s: float = 3.0     # ... for this long, then fail with DisconnectedError
    write_timeout_s: float = 1.0         # a write that cannot finish this fast means the port is stuck
    exclusive: bool = True               # lock the port so no other program writes to the bus

    def __post_init__(self) -> None:
        object.__setattr__(self, "usb_vid", _usb_id(self.usb_vid, "usb_vid"))
        object.__setattr__(self, "usb_pid", _usb_id(self.usb_pid, "usb_pid"))
        if self.port is None and self.usb_vid is None:
            raise DriverError("serial: give a port (e.g. /dev/ttyUSB0) or usb_vid/usb_pid of the adapter")
        if self.port is not None and self.usb_vid is not None:
            raise DriverError(f"serial: give either port ({self.port!r}) or usb_vid/usb_pid, not both")
        for name in ("timeout_s", "reconnect_interval_s", "write_timeout_s"):
            if not getattr(self, name) > 0:
                raise DriverError(f"serial: {name} must be positive, got {getattr(self, name)!r}")
        if not self.reconnect_timeout_s >= 0:
            raise DriverError(f"serial: reconnect_timeout_s must be >= 0, got {self.reconnect_timeout_s!r}")
        if not (isinstance(self.retries, int) and self.retries >= 0):
            raise DriverError(f"serial: retries must be an integer >= 0, got {self.retries!r}")
        if not (isinstance(self.baudrate, int) and self.baudrate > 0):
            raise DriverError(f"serial: baudrate must be a positive integer, got {self.baudrate!r}")


def describe_ports() -> str:
    """The serial ports on this machine, for error messages."""
    ports = list(list_ports.comports())
    if not ports:
        return "no serial ports found"
    items = []
    for p in ports:
        usb = f", USB {p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else ""
        serial_number = f" serial {p.serial_number}" if getattr(p, "serial_number", None) else ""
        items.append(f"{p.device} ({p.description}{usb}{serial_number})")
    return "ports: " + "; ".join(items)


class SerialLink:
    """A request/reply link over one serial port; see the module docstring.

    Thread-safe: exchanges are serialised by a lock (one request on the bus at a time).
    """

    POLL_S = 0.01

    def __init__(self, config: SerialConfig, framer: Framer) -> None:
        self.config = config
        self.framer = framer
        self.device: str | None = None       # the path actually opened (resolved from the USB id)
        self._serial: serial.Serial | None = None
        self._lost = False                   # the port failed and has not come back yet
        self._lock = threading.RLock()
        self.counters = {"requests": 0, "timeouts": 0, "crc_errors": 0, "garbage_bytes": 0, "stray_frames": 0,
                         "retries": 0, "reconnects": 0, "disconnects": 0, "no_reply_errors": 0}

    # -- opening ----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        c = self.config
        if c.port is not None:
            return f"serial port {c.port}"
        usb = f"USB {c.usb_vid:04x}:{c.usb_pid:04x}" if c.usb_pid is not None else f"USB vendor {c.usb_vid:04x}"
        if c.usb_serial:
            usb += f" serial {c.usb_serial}"
        return f"{usb}" + (f" ({self.device})" if self.device else "")

    @property
    def is_open(self) -> bool:
        return self._serial is not None or self._lost

    def open(self) -> None:
        """Open the port; raises PortMissingError / PortBusyError / DriverError with what to do."""
        with self._lock:
            if self.is_open:
                return
            self._serial = self._open_device()
            self._lost = False

    def close(self) -> None:
        with self._lock:
            self._close_port()
            self._lost = False

    def __enter__(self) -> "SerialLink":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _resolve(self) -> str:
        c = self.config
        if c.port is not None:
            return c.port
        ports = list(list_ports.comports())
        found = [p for p in ports if p.vid == c.usb_vid and (c.usb_pid is None or p.pid == c.usb_pid)
                 and (c.usb_serial is None or p.serial_number == c.usb_serial)]
        if not found:
            raise PortMissingError(f"no {self.where} is connected ({describe_ports()}); plug the adapter in, or "
                                   "check usb_vid/usb_pid/usb_serial (see `python -m serial.tools.list_ports -v`)")
        if len(found) > 1:
            raise DriverError(f"{len(found)} devices match {self.where}: {[p.device for p in found]}; set usb_serial "
                              "(serial numbers: " + ", ".join(str(p.serial_number) for p in found) + ") or port")
        return found[0].device

    def _open_device(self) -> serial.Serial:
        device = self._resolve()
        c = self.config
        try:
            port = serial.Serial(port=device, baudrate=c.baudrate, timeout=min(self.POLL_S, c.timeout_s),
                                 write_timeout=c.write_timeout_s, exclusive=c.exclusive)
        except serial.SerialException as exc:
            raise self._open_error(device, exc) from exc
        except (ValueError, OSError) as exc:
            raise DriverError(f"cannot open {self.where} at {device} with baudrate {c.baudrate}: {exc}") from exc
        self.device = device
        return port

    def _open_error(self, device: str, exc: serial.SerialException) -> DriverError:
        code = getattr(exc, "errno", None)
        text = str(exc)
        where = self.where if self.config.port is not None else f"{self.where} at {device}"
        if "lock" in text.lower() or code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
            return PortBusyError(f"{where} is busy: another program (or another driver in this one) "
                                 f"has it open ({text}); close it (check `fuser {device}`) and try again")
        if code == errno.ENOENT:
            return PortMissingError(f"{where} does not exist ({describe_ports()}); check the cable "
                                    "and the port name, or give usb_vid/usb_pid to find the adapter by its USB id")
        if code == errno.EACCES:
            return DriverError(f"{where}: no permission to open it ({text}); add your user to the "
                               "group owning it (usually `dialout`: sudo usermod -aG dialout $USER, then log in again)")
        return DriverError(f"cannot open {where}: {text}")

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS as exc:  # a vanished device may fail to close
                log.debug("closing %s: %s", self.where, exc)

    # -- reconnecting -----------------------------------------------------------------------

    def _reconnect(self, cause: BaseException) -> None:
        """Reopen the port after `cause` broke it, for up to reconnect_timeout_s."""
        c = self.config
        self.counters["disconnects"] += 1
        log.warning("%s failed (%s); reconnecting for up to %.1f s", self.where, cause, c.reconnect_timeout_s)
        self._close_port()
        self._lost = True
        deadline = time.monotonic() + c.reconnect_timeout_s
        while True:
            try:
                self._reopen()
                return
            except PortMissingError:
                last = "the port does not exist"
            except DriverError as exc:
                last = str(exc)
            if time.monotonic() + c.reconnect_interval_s > deadline:
                raise DisconnectedError(
                    f"{self.where} failed ({cause}) and did not come back within {c.reconnect_timeout_s:g} s (last "
                    f"try: {last}); check the USB cable and the adapter; the link retries on the next "
                    "request") from cause
            time.sleep(c.reconnect_interval_s)

    def _reopen(self) -> None:
        self._serial = self._open_device()
        self._lost = False
        self.counters["reconnects"] += 1
        log.warning("%s reconnected (%s)", self.where, os.path.realpath(self.device or ""))

    # -- exchanges --------------------------------------------------------------------------

    def transact(self, packet: bytes, expect_reply: bool = True) -> bytes | None:
        """Send `packet`; with `expect_reply`, return its single reply frame (retrying as configured)."""
        if not expect_reply:
            self.exchange(packet, ())
            return None
        keys = self.framer.expected_replies(packet)
        if len(keys) != 1:
            raise ValueError(f"transact() expects one reply but {self.framer.describe(packet)} asks for {len(keys)}; "
                             "use exchange()")
        return self.exchange(packet, keys)[keys[0]]

    def exchange(self, packet: bytes, keys: Sequence[Hashable] | None = None) -> dict[Hashable, bytes]:
        """Send `packet` and return its replies by key (all of `keys`, by default the framer's expectation).

        Every attempt starts afresh (stale input flushed, the request sent again) and must collect all
        replies; raises NoReplyError after 1 + retries attempts, DisconnectedError if the port is gone.
        """
        keys = tuple(self.framer.expected_replies(packet) if keys is None else keys)
        with self._lock:
            if not self.is_open:
                raise DriverError(f"{self.where} is closed; call open() first")
            attempts = 1 + self.config.retries
            crc_before = self.counters["crc_errors"]
            reconnects_left = 2   # a flapping device must not keep one request going forever
            attempt = 0
            got: dict[Hashable, bytes] = {}
            while attempt < attempts:
                if attempt:
                    self.counters["retries"] += 1
                attempt += 1
                try:
                    if self._serial is None:   # lost earlier: one quick try to reopen, else fail now
                        try:
                            self._reopen()
                        except DriverError as exc:
                            raise DisconnectedError(f"{self.where} is disconnected and still cannot be opened: {exc}"
                                                    ) from exc
                    got = self._attempt(packet, keys)
                except _PORT_ERRORS as exc:
                    if reconnects_left == 0:
                        self._close_port()
                        self._lost = True
                        raise DisconnectedError(f"{self.where} keeps failing ({exc}); check the cable and power"
                                                ) from exc
                    reconnects_left -= 1
                    self._reconnect(exc)
                    attempt -= 1       # the port broke: this attempt does not count against the retries
                    continue
                if len(got) == len(keys):
                    return got
            missing = tuple(k for k in keys if k not in got)
            self.counters["no_reply_errors"] += 1
            c = self.config
            corrupted = self.counters["crc_errors"] - crc_before
            hint = (f"{corrupted} corrupted replies: check the wiring and the baudrate ({c.baudrate})" if corrupted
                    else f"check that the device is powered, its id and the baudrate ({c.baudrate})")
            raise NoReplyError(
                f"{self.where}: no valid reply to {self.framer.describe(packet)} after {attempts} tries "
                f"({c.timeout_s * 1000:g} ms each); {list(missing)} did not answer; {hint}",
                missing, got, attempts, corrupted)

    def _attempt(self, packet: bytes, keys: tuple[Hashable, ...]) -> dict[Hashable, bytes]:
        port = self._serial
        assert port is not None
        port.reset_input_buffer()   # a late reply to an earlier request must not answer this one
        port.write(packet)
        self.counters["requests"] += 1
        got: dict[Hashable, bytes] = {}
        if not keys:
            return got
        buffer = bytearray()
        wanted = self.framer.extract(buffer).wanted
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            # At least what the framer needs (returns as soon as it is there), and whatever else has
            # arrived: the replies of a sync read come back to back.
            chunk = port.read(max(1, wanted, port.in_waiting))
            if chunk:
                buffer += chunk
                while True:
                    found = self.framer.extract(buffer)
                    self.counters["garbage_bytes"] += found.garbage
                    self.counters["crc_errors"] += found.bad_frames
                    if found.frame is None:
                        wanted = found.wanted
                        break
                    key = self.framer.reply_key(packet, found.frame)
                    if key is None or key not in keys or key in got:
                        self.counters["stray_frames"] += 1
                        continue
                    got[key] = found.frame
                    if len(got) == len(keys):
                        return got
            if time.monotonic() >= deadline:
                self.counters["timeouts"] += 1
                return got
