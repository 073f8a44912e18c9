"""Dynamixel Protocol 2.0 packets: what goes on the wire, and nothing about ports or arms.

This module owns the byte format of the public ROBOTIS specification (e-manual, "Protocol 2.0"):

    instruction packet:  FF FF FD 00 | ID | LEN_L LEN_H | INSTRUCTION | PARAMS... | CRC_L CRC_H
    status packet:       FF FF FD 00 | ID | LEN_L LEN_H | 0x55 | ERROR | PARAMS... | CRC_L CRC_H

* LENGTH (little-endian) counts the bytes after it: instruction, (error,) params and the 2 CRC
  bytes, *after* byte stuffing.
* Byte stuffing: wherever FF FF FD occurs in the instruction..params part, an extra FD follows
  (FF FF FD FD), so the header pattern FF FF FD 00 never appears inside a packet and a reader can
  resynchronise on it. The receiver removes the extra FD. (The ROBOTIS SDK stuffs from the
  instruction byte on; ID and LENGTH can never start the pattern for valid packets, ID <= 0xFE.)
* CRC-16: polynomial 0x8005, MSB first, initial value 0, no final xor ("CRC-16/BUYPASS"), over
  every byte from the header through the last (stuffed) parameter byte.

Besides the generic encoder/decoder there are builders and reply parsers for the instructions the
arm uses (ping, read, write, sync read, sync write), `DynamixelFramer` (the `Framer` that lets a
`daydream.drivers.serial_link.SerialLink` cut these packets out of a byte stream), and the X-series
control-table addresses the arm and the emulator share.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Hashable, Mapping, Sequence

from daydream.drivers.interface import DriverError
from daydream.drivers.serial_link import Extracted, Framer

HEADER = b"\xff\xff\xfd\x00"
STUFF_PATTERN = b"\xff\xff\xfd"
BROADCAST_ID = 0xFE
MAX_ID = 252                      # 0..252 are servo ids; 253 is reserved, 254 is broadcast
MIN_LENGTH = 3                    # instruction + CRC (a status also has the error byte: 4)


class Instruction(enum.IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    BULK_READ = 0x92
    BULK_WRITE = 0x93


class XAddr(enum.IntEnum):
    """X-series (XL430/XM430/XH430...) control table: (address); sizes in `X_SIZES`."""

    MODEL_NUMBER = 0
    FIRMWARE_VERSION = 6
    ID = 7
    BAUD_RATE = 8
    RETURN_DELAY_TIME = 9
    OPERATING_MODE = 11
    CURRENT_LIMIT = 38
    VELOCITY_LIMIT = 44
    MAX_POSITION_LIMIT = 48
    MIN_POSITION_LIMIT = 52
    TORQUE_ENABLE = 64
    STATUS_RETURN_LEVEL = 68
    HARDWARE_ERROR_STATUS = 70
    GOAL_CURRENT = 102
    PROFILE_VELOCITY = 112
    GOAL_POSITION = 116
    PRESENT_CURRENT = 126
    PRESENT_VELOCITY = 128
    PRESENT_POSITION = 132


X_SIZES = {XAddr.MODEL_NUMBER: 2, XAddr.FIRMWARE_VERSION: 1, XAddr.ID: 1, XAddr.BAUD_RATE: 1,
           XAddr.RETURN_DELAY_TIME: 1, XAddr.OPERATING_MODE: 1, XAddr.CURRENT_LIMIT: 2, XAddr.VELOCITY_LIMIT: 4,
           XAddr.MAX_POSITION_LIMIT: 4, XAddr.MIN_POSITION_LIMIT: 4, XAddr.TORQUE_ENABLE: 1,
           XAddr.STATUS_RETURN_LEVEL: 1, XAddr.HARDWARE_ERROR_STATUS: 1, XAddr.GOAL_CURRENT: 2,
           XAddr.PROFILE_VELOCITY: 4, XAddr.GOAL_POSITION: 4, XAddr.PRESENT_CURRENT: 2, XAddr.PRESENT_VELOCITY: 4,
           XAddr.PRESENT_POSITION: 4}

OPERATING_MODE_POSITION = 3
OPERATING_MODE_CURRENT_POSITION = 5   # position control with the current bounded by Goal Current

# Status ERROR byte: bit 7 is the hardware alert (details in Hardware Error Status); bits 0..6 a code.
ALERT_BIT = 0x80
STATUS_ERRORS = {
    0x01: "Result Fail (the instruction could not be processed)",
    0x02: "Instruction Error (undefined instruction, or ACTION without REG_WRITE)",
    0x03: "CRC Error (the servo received a corrupted packet)",
    0x04: "Data Range Error (the data is too long or too short for the address)",
    0x05: "Data Length Error (the packet is shorter than the instruction needs)",
    0x06: "Data Limit Error (the value exceeds the limit of the address)",
    0x07: "Access Error (read-only address, EEPROM while torque is on, or an undefined address)",
}


class ProtocolError(DriverError, ValueError):
    """Bytes that are not a valid Protocol 2.0 packet; the message says what is wrong.

    A DriverError (so drivers' callers catch it with the rest) and a ValueError (it is about bad data)."""


class CrcError(ProtocolError):
    """The packet's CRC does not match its bytes (corrupted in transit)."""


class ServoError(DriverError):
    """A servo answered with an error code in its status packet."""

    def __init__(self, servo_id: int, error: int, what: str) -> None:
        self.servo_id = servo_id
        self.error = error
        code = error & ~ALERT_BIT
        name = STATUS_ERRORS.get(code, f"unknown error code {code}")
        super().__init__(f"servo id {servo_id} answered {what} with {name}")


# -- CRC and byte stuffing ----------------------------------------------------------------

def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16 of Protocol 2.0 (poly 0x8005, MSB first, init 0, no final xor) over `data`."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def stuff(body: bytes) -> bytes:
    """Insert FD after every FF FF FD in `body` (the instruction..params part of a packet)."""
    if STUFF_PATTERN not in body:
        return bytes(body)
    return bytes(body).replace(STUFF_PATTERN, STUFF_PATTERN + b"\xfd")


def unstuff(body: bytes) -> bytes:
    """Remove the FD that `stuff` inserted after every FF FF FD."""
    if STUFF_PATTERN + b"\xfd" not in body:
        return bytes(body)
    return bytes(body).replace(STUFF_PATTERN + b"\xfd", STUFF_PATTERN)


# -- generic packets ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Packet:
    """A decoded packet: for a status packet `instruction` is 0x55 and params[0] the error byte."""

    id: int
    instruction: int
    params: bytes


@dataclasses.dataclass(frozen=True)
class Status:
    """A decoded status packet (a servo's reply)."""

    id: int
    error: int                    # the raw ERROR byte
    params: bytes

    @property
    def alert(self) -> bool:
        """The servo has a hardware error (overload, overheating, voltage...): read Hardware Error Status."""
        return bool(self.error & ALERT_BIT)

    @property
    def code(self) -> int:
        return self.error & ~ALERT_BIT

    def check(self, what: str) -> "Status":
        """Raise `ServoError` if the servo reported an error code (the alert bit alone is not an error here)."""
        if self.code:
            raise ServoError(self.id, self.error, what)
        return self


def _check_id(servo_id: int, allow_broadcast: bool = True) -> None:
    if not (0 <= servo_id <= MAX_ID or (allow_broadcast and servo_id == BROADCAST_ID)):
        raise ValueError(f"servo id {servo_id} is invalid: ids are 0..{MAX_ID}"
                         + (f" or {BROADCAST_ID} (broadcast)" if allow_broadcast else ""))


def encode_packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A complete packet (header, id, length, stuffed instruction+params, CRC)."""
    _check_id(servo_id)
    body = stuff(bytes([instruction]) + bytes(params))
    length = len(body) + 2
    if length > 0xFFFF:
        raise ValueError(f"packet too long: {length} bytes after the length field (at most 65535)")
    head = HEADER + bytes([servo_id, length & 0xFF, length >> 8]) + body
    crc = crc16(head)
    return head + bytes([crc & 0xFF, crc >> 8])


def encode_instruction(servo_id: int, instruction: Instruction | int, params: bytes = b"") -> bytes:
    """An instruction packet to `servo_id` (BROADCAST_ID for all)."""
    if int(instruction) == Instruction.STATUS:
        raise ValueError("0x55 is the status instruction; use encode_status for replies")
    return encode_packet(servo_id, int(instruction), params)


def encode_status(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    """A status packet from `servo_id` (what a servo, or the emulator, sends back)."""
    _check_id(servo_id, allow_broadcast=False)
    return encode_packet(servo_id, Instruction.STATUS, bytes([error & 0xFF]) + bytes(params))


def decode_packet(frame: bytes, check_crc: bool = True) -> Packet:
    """Parse one complete packet; raises ProtocolError (CrcError for a bad checksum) on anything invalid.

    `check_crc=False` skips the CRC for frames a `DynamixelFramer` already verified."""
    frame = bytes(frame)
    if len(frame) < 10:
        raise ProtocolError(f"packet truncated: {len(frame)} bytes, a packet has at least 10 ({frame.hex(' ')})")
    if not frame.startswith(HEADER):
        raise ProtocolError(f"packet does not start with the header FF FF FD 00: {frame[:4].hex(' ')}")
    length = frame[5] | (frame[6] << 8)
    if length < MIN_LENGTH:
        raise ProtocolError(f"packet length field is {length}, at least {MIN_LENGTH} (instruction + CRC)")
    if len(frame) != 7 + length:
        kind = "truncated" if len(frame) < 7 + length else "too long"
        raise ProtocolError(f"packet {kind}: length field says {7 + length} bytes in all, got {len(frame)}")
    got = frame[-2] | (frame[-1] << 8)
    if check_crc and (expected := crc16(frame[:-2])) != got:
        raise CrcError(f"packet CRC is {got:#06x} but its bytes give {expected:#06x} (corrupted in transit)")
    body = unstuff(frame[7:-2])
    return Packet(id=frame[4], instruction=body[0], params=body[1:])


def decode_status(frame: bytes, check_crc: bool = True) -> Status:
    """Parse a status packet (the error byte is kept; call `Status.check` to raise on error codes)."""
    packet = decode_packet(frame, check_crc)
    if packet.instruction != Instruction.STATUS:
        raise ProtocolError(f"expected a status packet (instruction 0x55), got instruction {packet.instruction:#04x} "
                            f"from id {packet.id} (an echo of our own packet? check the adapter's echo setting)")
    if not packet.params:
        raise ProtocolError(f"status packet from id {packet.id} lacks the error byte")
    return Status(id=packet.id, error=packet.params[0], params=packet.params[1:])


# -- integers in the control table --------------------------------------------------------

def to_bytes(value: int, size: int, signed: bool = True) -> bytes:
    """`value` as `size` little-endian bytes (the control table's byte order)."""
    return int(value).to_bytes(size, "little", signed=signed)


def from_bytes(data: bytes, signed: bool = True) -> int:
    return int.from_bytes(data, "little", signed=signed)


def _addr_len(address: int, length: int) -> bytes:
    if not (0 <= address <= 0xFFFF and 0 < length <= 0xFFFF):
        raise ValueError(f"address {address} / length {length} out of range (0..65535, length >= 1)")
    return to_bytes(address, 2, False) + to_bytes(length, 2, False)


# -- instruction builders -----------------------------------------------------------------

def ping_packet(servo_id: int) -> bytes:
    return encode_instruction(servo_id, Instruction.PING)


def read_packet(servo_id: int, address: int, length: int) -> bytes:
    _check_id(servo_id, allow_broadcast=False)
    return encode_instruction(servo_id, Instruction.READ, _addr_len(address, length))


def write_packet(servo_id: int, address: int, data: bytes) -> bytes:
    return encode_instruction(servo_id, Instruction.WRITE, _addr_len(address, len(data))[:2] + bytes(data))


def sync_read_packet(ids: Sequence[int], address: int, length: int) -> bytes:
    if not ids:
        raise ValueError("sync read needs at least one servo id")
    for i in ids:
        _check_id(i, allow_broadcast=False)
    return encode_instruction(BROADCAST_ID, Instruction.SYNC_READ, _addr_len(address, length) + bytes(ids))


def sync_write_packet(address: int, length: int, data: Mapping[int, bytes]) -> bytes:
    """One packet writing `length` bytes at `address` of every servo in `data` (id -> bytes)."""
    if not data:
        raise ValueError("sync write needs at least one servo")
    params = bytearray(_addr_len(address, length))
    for servo_id, value in data.items():
        _check_id(servo_id, allow_broadcast=False)
        if len(value) != length:
            raise ValueError(f"sync write of {length} bytes got {len(value)} bytes for id {servo_id}")
        params.append(servo_id)
        params += value
    return encode_instruction(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params))


# -- reply parsers ------------------------------------------------------------------------

def parse_ping(status: Status) -> tuple[int, int]:
    """(model number, firmware version) from a ping's status."""
    status.check("PING")
    if len(status.params) != 3:
        raise ProtocolError(f"ping reply from id {status.id} has {len(status.params)} parameter bytes, expected 3")
    return from_bytes(status.params[:2], False), status.params[2]


def parse_read(status: Status, length: int, what: str = "READ") -> bytes:
    """The data bytes of a read (or sync read) reply, checked for errors and length."""
    status.check(what)
    if len(status.params) != length:
        raise ProtocolError(f"{what} reply from id {status.id} has {len(status.params)} data bytes, expected {length}")
    return status.params


def expected_reply_params(request: Packet) -> int | None:
    """How many parameter bytes (after the error byte) a reply to `request` carries; None: no reply."""
    ins, p = request.instruction, request.params
    if ins == Instruction.PING:
        return 3
    if ins in (Instruction.READ, Instruction.SYNC_READ) and len(p) >= 4:
        return p[2] | (p[3] << 8)
    if ins in (Instruction.WRITE, Instruction.REG_WRITE, Instruction.ACTION, Instruction.REBOOT,
               Instruction.FACTORY_RESET, Instruction.CLEAR):
        return 0
    return None


def describe(request: Packet) -> str:
    """A short human description of an instruction packet, for error messages."""
    try:
        name = Instruction(request.instruction).name
    except ValueError:
        name = f"instruction {request.instruction:#04x}"
    p = request.params
    if request.instruction == Instruction.SYNC_READ and len(p) >= 4:
        return (f"SYNC_READ of {from_bytes(p[2:4], False)} bytes at address {from_bytes(p[:2], False)} "
                f"from ids {list(p[4:])}")
    if request.instruction == Instruction.SYNC_WRITE and len(p) >= 4:
        return f"SYNC_WRITE at address {from_bytes(p[:2], False)}"
    if request.instruction == Instruction.READ and len(p) >= 4:
        return f"READ of {from_bytes(p[2:4], False)} bytes at address {from_bytes(p[:2], False)} from id {request.id}"
    if request.instruction == Instruction.WRITE and len(p) >= 2:
        return f"WRITE at address {from_bytes(p[:2], False)} to id {request.id}"
    return f"{name} to id {request.id}"


# -- framing ------------------------------------------------------------------------------

class DynamixelFramer(Framer):
    """Cuts Protocol 2.0 packets out of a byte stream for `SerialLink`.

    Garbage before a header is dropped; a packet with a bad CRC (or an impossible length) is dropped
    by skipping one byte and searching for the next header, which stuffing guarantees is not inside
    a valid packet. Reply keys are servo ids.
    """

    name = "dynamixel-2.0"

    def __init__(self, max_length: int = 1024) -> None:
        self.max_length = max_length
        self._request: tuple[bytes, Packet] | None = None   # the last request, decoded once per exchange

    def _decode_request(self, request: bytes) -> Packet:
        if self._request is None or self._request[0] != request:
            self._request = (bytes(request), decode_packet(request))
        return self._request[1]

    def extract(self, buffer: bytearray) -> Extracted:
        garbage = bad = 0
        while True:
            start = buffer.find(HEADER)
            if start < 0:
                # Keep a tail that may be the start of a header split across reads.
                keep = next((k for k in (3, 2, 1) if len(buffer) >= k and HEADER.startswith(bytes(buffer[-k:]))), 0)
                garbage += len(buffer) - keep
                del buffer[:len(buffer) - keep]
                return Extracted(None, garbage, bad, 10 - keep)
            if start:
                garbage += start
                del buffer[:start]
            if len(buffer) < 7:
                return Extracted(None, garbage, bad, 7 - len(buffer) + 3)
            length = buffer[5] | (buffer[6] << 8)
            if length < MIN_LENGTH or length > self.max_length or buffer[4] > BROADCAST_ID:
                bad += 1
                del buffer[:1]
                continue
            total = 7 + length
            if len(buffer) < total:
                return Extracted(None, garbage, bad, total - len(buffer))
            frame = bytes(buffer[:total])
            if crc16(frame[:-2]) != (frame[-2] | (frame[-1] << 8)):
                bad += 1
                del buffer[:1]
                continue
            del buffer[:total]
            return Extracted(frame, garbage, bad, 0)

    def expected_replies(self, request: bytes) -> tuple[Hashable, ...]:
        packet = self._decode_request(request)
        if expected_reply_params(packet) is None:
            return ()
        if packet.instruction == Instruction.SYNC_READ:
            return tuple(packet.params[4:])
        if packet.id == BROADCAST_ID:
            raise ValueError(f"{describe(packet)}: broadcast replies come from unknown ids; send to each id instead")
        return (packet.id,)

    def reply_key(self, request: bytes, frame: bytes) -> Hashable | None:
        # Only a status packet from an addressed servo with the right amount of data answers the request;
        # anything else (a late reply to an earlier request, an echo) is a stray frame.
        if len(frame) < 11 or frame[7] != Instruction.STATUS:
            return None
        packet = self._decode_request(request)
        servo_id = frame[4]
        if packet.instruction == Instruction.SYNC_READ:
            if servo_id not in packet.params[4:]:
                return None
        elif servo_id != packet.id:
            return None
        expected = expected_reply_params(packet)
        params = unstuff(frame[8:-2])        # error byte + data
        if expected is not None and len(params) - 1 != expected and not (params and params[0] & 0x7F):
            return None                      # error statuses may carry no data; they still answer
        return servo_id

    def describe(self, request: bytes) -> str:
        return describe(decode_packet(request))
