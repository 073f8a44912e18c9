"""Dynamixel Protocol 2.0 packets against the public specification's examples (ROBOTIS e-manual),
byte stuffing, decode errors, and the framer that cuts packets out of a byte stream."""

from __future__ import annotations

import pytest

from daydream.drivers.dynamixel import protocol as dxl
from daydream.drivers.interface import DriverError

# Hand-copied from the e-manual's Protocol 2.0 examples.
PING_1 = "FF FF FD 00 01 03 00 01 19 4E"
PING_1_STATUS = "FF FF FD 00 01 07 00 55 00 06 04 26 65 5D"          # model 1030, firmware 38
READ_1_132_4 = "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15"
WRITE_1_116_512 = "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89"
SYNC_READ_12_132_4 = "FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA"
SYNC_WRITE_116 = "FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00 82 87"  # 150 and 170


def h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize("vector", [PING_1, PING_1_STATUS, READ_1_132_4, WRITE_1_116_512, SYNC_READ_12_132_4,
                                    SYNC_WRITE_116])
def test_crc_reproduces_the_specification_examples(vector):
    packet = h(vector)
    assert dxl.crc16(packet[:-2]) == packet[-2] | (packet[-1] << 8)


def test_crc_check_value():
    # CRC-16/BUYPASS (poly 0x8005, init 0, no reflection, no xor) of "123456789" is 0xFEE8.
    assert dxl.crc16(b"123456789") == 0xFEE8
    assert dxl.crc16(b"6789", dxl.crc16(b"12345")) == 0xFEE8   # incremental


def test_builders_match_the_specification_examples():
    assert dxl.ping_packet(1) == h(PING_1)
    assert dxl.read_packet(1, 132, 4) == h(READ_1_132_4)
    assert dxl.write_packet(1, 116, dxl.to_bytes(512, 4)) == h(WRITE_1_116_512)
    assert dxl.sync_read_packet([1, 2], 132, 4) == h(SYNC_READ_12_132_4)
    assert dxl.sync_write_packet(116, 4, {1: dxl.to_bytes(150, 4), 2: dxl.to_bytes(170, 4)}) == h(SYNC_WRITE_116)
    assert dxl.encode_status(1, 0, bytes([0x06, 0x04, 0x26])) == h(PING_1_STATUS)


def test_status_decoding_of_the_ping_example():
    status = dxl.decode_status(h(PING_1_STATUS))
    assert (status.id, status.error, status.alert) == (1, 0, False)
    assert dxl.parse_ping(status) == (1030, 38)


def test_instruction_decoding_round_trips():
    packet = dxl.decode_packet(h(SYNC_WRITE_116))
    assert packet == dxl.Packet(id=dxl.BROADCAST_ID, instruction=dxl.Instruction.SYNC_WRITE,
                                params=h("74 00 04 00 01 96 00 00 00 02 AA 00 00 00"))


def test_stuffing_round_trips_and_escapes_the_header_pattern():
    assert dxl.stuff(h("01 FF FF FD 02")) == h("01 FF FF FD FD 02")
    assert dxl.unstuff(h("01 FF FF FD FD 02")) == h("01 FF FF FD 02")
    for body in (b"", h("FF FF FD"), h("FF FF FD FF FF FD"), h("FF FF FF FD 00"), h("FD FF FF FD FD")):
        assert dxl.unstuff(dxl.stuff(body)) == body


def test_a_payload_containing_the_header_pattern_is_stuffed_and_decoded():
    # Goal position 0x00FDFFFF written as bytes FF FF FD 00: the header pattern itself.
    data = h("FF FF FD 00")
    packet = dxl.write_packet(1, 116, data)
    # instruction + addr (2) + data (4) + one stuffing byte + CRC (2) = 10
    assert packet[5] | (packet[6] << 8) == 10
    assert packet[7:15] == h("03 74 00 FF FF FD FD 00")
    assert dxl.crc16(packet[:-2]) == packet[-2] | (packet[-1] << 8)
    assert packet.find(dxl.HEADER, 1) == -1           # no false header inside
    decoded = dxl.decode_packet(packet)
    assert decoded.params == h("74 00") + data
    # A status carrying the pattern too.
    status = dxl.decode_status(dxl.encode_status(3, 0, h("FF FF FD 00")))
    assert status.params == h("FF FF FD 00")


def test_decode_errors_say_what_is_wrong():
    good = h(READ_1_132_4)
    with pytest.raises(dxl.CrcError, match="CRC"):
        dxl.decode_packet(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(dxl.ProtocolError, match="truncated"):
        dxl.decode_packet(good[:-3])
    with pytest.raises(dxl.ProtocolError, match="truncated"):
        dxl.decode_packet(good[:6])
    with pytest.raises(dxl.ProtocolError, match="header"):
        dxl.decode_packet(h("FF FF FE 00") + good[4:])
    with pytest.raises(dxl.ProtocolError, match="status packet"):
        dxl.decode_status(good)
    # Protocol errors are DriverErrors, so callers of a driver catch them with the rest.
    assert issubclass(dxl.ProtocolError, DriverError)


def test_status_error_byte():
    status = dxl.decode_status(dxl.encode_status(2, 0x06))
    assert status.code == 6 and not status.alert
    with pytest.raises(dxl.ServoError, match="Data Limit Error") as info:
        status.check("WRITE")
    assert info.value.servo_id == 2
    alert = dxl.decode_status(dxl.encode_status(2, 0x80, h("00 08 00 00")))
    assert alert.alert and alert.code == 0
    assert alert.check("READ") is alert              # an alert alone is reported, not raised
    with pytest.raises(dxl.ServoError, match="Access Error"):
        dxl.parse_read(dxl.decode_status(dxl.encode_status(2, 0x87)), 4)
    with pytest.raises(dxl.ProtocolError, match="expected 4"):
        dxl.parse_read(dxl.decode_status(dxl.encode_status(2, 0, h("00 08"))), 4)


def test_builders_reject_invalid_ids_and_sizes():
    with pytest.raises(ValueError, match="servo id"):
        dxl.ping_packet(253)
    with pytest.raises(ValueError, match="servo id"):
        dxl.read_packet(dxl.BROADCAST_ID, 132, 4)
    with pytest.raises(ValueError, match="4 bytes"):
        dxl.sync_write_packet(116, 4, {1: b"\x00\x00"})
    with pytest.raises(ValueError):
        dxl.sync_read_packet([], 132, 4)


def test_framer_resyncs_on_garbage_and_corrupted_frames():
    framer = dxl.DynamixelFramer()
    good1 = dxl.encode_status(1, 0, h("00 08 00 00"))
    good2 = dxl.encode_status(2, 0, h("FF FF FD 00"))    # stuffed
    bad = bytearray(dxl.encode_status(3, 0, h("01 02 03 04")))
    bad[-1] ^= 0xFF
    buffer = bytearray(h("00 FF 13 FF FF") + bytes(bad) + good1 + h("FD 00") + good2)
    frames, garbage, bad_frames = [], 0, 0
    while True:
        found = framer.extract(buffer)
        garbage += found.garbage
        bad_frames += found.bad_frames
        if found.frame is None:
            break
        frames.append(found.frame)
    assert frames == [good1, good2]
    assert bad_frames == 1 and garbage > 0


def test_framer_waits_for_split_frames():
    framer = dxl.DynamixelFramer()
    packet = dxl.encode_status(1, 0, h("00 08 00 00"))
    buffer = bytearray()
    for i, byte in enumerate(packet):
        buffer.append(byte)
        found = framer.extract(buffer)
        if i < len(packet) - 1:
            assert found.frame is None and found.wanted >= 1 and found.garbage == 0
    assert found.frame == packet and not buffer


def test_framer_matches_replies_to_requests():
    framer = dxl.DynamixelFramer()
    read = dxl.read_packet(1, 132, 4)
    assert framer.expected_replies(read) == (1,)
    assert framer.reply_key(read, dxl.encode_status(1, 0, h("00 08 00 00"))) == 1
    assert framer.reply_key(read, dxl.encode_status(2, 0, h("00 08 00 00"))) is None      # another servo
    assert framer.reply_key(read, dxl.encode_status(1, 0, h("06 04 26"))) is None          # a late ping reply
    assert framer.reply_key(read, dxl.encode_status(1, 0x07)) == 1                          # an error answers too
    assert framer.reply_key(read, read) is None                                             # an echo
    sync = dxl.sync_read_packet([3, 4], 126, 10)
    assert framer.expected_replies(sync) == (3, 4)
    assert framer.reply_key(sync, dxl.encode_status(4, 0, bytes(10))) == 4
    assert framer.expected_replies(dxl.sync_write_packet(116, 4, {1: bytes(4)})) == ()
    assert "SYNC_READ" in framer.describe(sync) and "[3, 4]" in framer.describe(sync)
