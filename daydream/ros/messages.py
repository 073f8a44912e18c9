"""The ROS 2 messages daydream uses, as Cyclone DDS IDL structs with ROS 2's wire format.

Each class is a dataclass and a `cyclonedds.idl.IdlStruct` whose DDS type name, field
names, field order and field types are exactly those ROS 2 generates for the `.msg`
definition (`sensor_msgs/msg/JointState` travels as `sensor_msgs::msg::dds_::JointState_`),
so a DDS writer of these classes is read by `ros2 topic echo` and vice versa. The class
attribute `ros_name` holds the ROS 2 name; `MESSAGE_TYPES` maps names to classes.

`encode` / `decode` give ROS 2's serialized form (what rosbag2 stores and `rclpy.serialize`
returns): the 4-byte CDR encapsulation header (CDR little endian) and the classic
(XCDR1) CDR body. `sensor_msgs/Image` has its own codec for `data` (bytes in, bytes out)
because the generic IDL machinery packs a uint8 sequence one Python int at a time.

Values: sequences are lists, `Image.data` is `bytes` (anything with the buffer protocol,
e.g. a numpy uint8 array, is accepted on the way out), fixed arrays are lists of their
length.
"""

import dataclasses
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from cyclonedds.idl import Endianness, IdlStruct
from cyclonedds.idl.types import array, float64, int32, sequence, uint8, uint32

__all__ = [
    "MESSAGE_TYPES", "Bool", "Duration", "Float64MultiArray", "Header", "Image", "Imu", "JointState",
    "JointTrajectory", "JointTrajectoryPoint", "MultiArrayDimension", "MultiArrayLayout", "Quaternion",
    "String", "Time", "Twist", "TwistStamped", "Vector3", "decode", "dds_type_name", "encode", "message_type",
    "ros_name", "stamp_to_time", "time_to_seconds", "TYPE_HASHES", "type_hash_user_data",
]

MESSAGE_TYPES: dict[str, type] = {}
"""ROS 2 name ("sensor_msgs/msg/JointState") -> message class."""

# ROS 2 type hashes (REP 2011, Jazzy and later) of the messages, as the RMWs announce them in an
# endpoint's USER_DATA (`typehash=RIHS01_...;`). Read from rclpy's own endpoints (the `ros` extra's
# Kilted wheels); the test suite checks them against rclpy where it is installed.
TYPE_HASHES: dict[str, str] = {
    "builtin_interfaces/msg/Time": "RIHS01_b106235e25a4c5ed35098aa0a61a3ee9c9b18d197f398b0e4206cea9acf9c197",
    "builtin_interfaces/msg/Duration": "RIHS01_e8d009f659816f758b75334ee1a9ca5b5c0b859843261f14c7f937349599d93b",
    "std_msgs/msg/Header": "RIHS01_f49fb3ae2cf070f793645ff749683ac6b06203e41c891e17701b1cb597ce6a01",
    "std_msgs/msg/Bool": "RIHS01_feb91e995ff9ebd09c0cb3d2aed18b11077585839fb5db80193b62d74528f6c9",
    "std_msgs/msg/String": "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18",
    "std_msgs/msg/MultiArrayDimension": "RIHS01_5e773a60a4c7fc8a54985f307c7837aa2994252a126c301957a24e31282c9cbe",
    "std_msgs/msg/MultiArrayLayout": "RIHS01_4c66e6f78e740ac103a94cf63259f968e48c617e7699e829b63c21a5cb50dac6",
    "std_msgs/msg/Float64MultiArray": "RIHS01_1025ddc6b9552d191f89ef1a8d2f60f3d373e28b283d8891ddcc974e8c55397f",
    "geometry_msgs/msg/Vector3": "RIHS01_cc12fe83e4c02719f1ce8070bfd14aecd40f75a96696a67a2a1f37f7dbb0765d",
    "geometry_msgs/msg/Quaternion": "RIHS01_8a765f66778c8ff7c8ab94afcc590a2ed5325a1d9a076ffff38fbce36f458684",
    "geometry_msgs/msg/Twist": "RIHS01_9c45bf16fe0983d80e3cfe750d6835843d265a9a6c46bd2e609fcddde6fb8d2a",
    "geometry_msgs/msg/TwistStamped": "RIHS01_5f0fcd4f81d5d06ad9b4c4c63e3ea51b82d6ae4d0558f1d475229b1121db6f64",
    "sensor_msgs/msg/JointState": "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e",
    "sensor_msgs/msg/Imu": "RIHS01_7d9a00ff131080897a5ec7e26e315954b8eae3353c3f995c55faf71574000b5b",
    "sensor_msgs/msg/Image": "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",
    "trajectory_msgs/msg/JointTrajectoryPoint":
        "RIHS01_de8907036d8bd45aac6f30cc9044a3d4a329c42cbf719aff7d95a584cfa532d7",
    "trajectory_msgs/msg/JointTrajectory": "RIHS01_179b33eba59d676f6d967ac71fe35e7ca2f64b2f3928f4a018cec115e213796e",
    "rmw_dds_common/msg/ParticipantEntitiesInfo":
        "RIHS01_91a0593bacdcc50ea9bdcf849a938b128412cc1ea821245c663bcd26f83c295e",
}


def type_hash_user_data(ros_name: str) -> bytes:
    """An endpoint's USER_DATA as the RMWs write it: `typehash=RIHS01_<sha256>;` (empty for an unknown type)."""
    digest = TYPE_HASHES.get(ros_name)
    return f"typehash={digest};".encode() if digest else b""

_M = TypeVar("_M", bound=type)


def dds_type_name(ros_name: str) -> str:
    """The DDS type name ROS 2 uses for a message: `pkg/msg/Name` -> `pkg::msg::dds_::Name_`."""
    package, kind, name = _split(ros_name)
    return f"{package}::{kind}::dds_::{name}_"


def _split(ros_name: str) -> tuple[str, str, str]:
    parts = ros_name.split("/")
    if len(parts) == 2:  # `pkg/Name`, as the ROS 2 CLI and rclpy's field types spell it
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{ros_name!r} is not a ROS 2 message name (expected package/msg/Name)")
    return parts[0], parts[1], parts[2]


def _message(ros: str) -> Callable[[_M], _M]:
    """Make the class a dataclass and register it under its ROS 2 name."""

    def register(cls: _M) -> _M:
        expected = dds_type_name(ros)
        if cls.__idl_typename__ != expected:  # a typo here would silently break interop with ROS 2
            raise TypeError(f"{cls.__name__} has DDS type name {cls.__idl_typename__!r}; ROS 2 uses {expected!r}")
        cls = dataclasses.dataclass(cls)
        cls.ros_name = ros
        MESSAGE_TYPES[ros] = cls
        return cls

    return register


# -- builtin_interfaces ----------------------------------------------------------------------

@_message("builtin_interfaces/msg/Time")
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@_message("builtin_interfaces/msg/Duration")
class Duration(IdlStruct, typename="builtin_interfaces::msg::dds_::Duration_"):
    sec: int32 = 0
    nanosec: uint32 = 0


# -- std_msgs --------------------------------------------------------------------------------

@_message("std_msgs/msg/Header")
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = dataclasses.field(default_factory=Time)
    frame_id: str = ""


@_message("std_msgs/msg/Bool")
class Bool(IdlStruct, typename="std_msgs::msg::dds_::Bool_"):
    data: bool = False


@_message("std_msgs/msg/String")
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


@_message("std_msgs/msg/MultiArrayDimension")
class MultiArrayDimension(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str = ""
    size: uint32 = 0
    stride: uint32 = 0


@_message("std_msgs/msg/MultiArrayLayout")
class MultiArrayLayout(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: sequence[MultiArrayDimension] = dataclasses.field(default_factory=list)
    data_offset: uint32 = 0


@_message("std_msgs/msg/Float64MultiArray")
class Float64MultiArray(IdlStruct, typename="std_msgs::msg::dds_::Float64MultiArray_"):
    layout: MultiArrayLayout = dataclasses.field(default_factory=MultiArrayLayout)
    data: sequence[float64] = dataclasses.field(default_factory=list)


# -- geometry_msgs ---------------------------------------------------------------------------

@_message("geometry_msgs/msg/Vector3")
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@_message("geometry_msgs/msg/Quaternion")
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0  # ROS 2's default is the identity rotation


@_message("geometry_msgs/msg/Twist")
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3 = dataclasses.field(default_factory=Vector3)
    angular: Vector3 = dataclasses.field(default_factory=Vector3)


@_message("geometry_msgs/msg/TwistStamped")
class TwistStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TwistStamped_"):
    header: Header = dataclasses.field(default_factory=Header)
    twist: Twist = dataclasses.field(default_factory=Twist)


# -- sensor_msgs -----------------------------------------------------------------------------

@_message("sensor_msgs/msg/JointState")
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    header: Header = dataclasses.field(default_factory=Header)
    name: sequence[str] = dataclasses.field(default_factory=list)
    position: sequence[float64] = dataclasses.field(default_factory=list)
    velocity: sequence[float64] = dataclasses.field(default_factory=list)
    effort: sequence[float64] = dataclasses.field(default_factory=list)


def _zeros9() -> list[float]:
    return [0.0] * 9


@_message("sensor_msgs/msg/Imu")
class Imu(IdlStruct, typename="sensor_msgs::msg::dds_::Imu_"):
    header: Header = dataclasses.field(default_factory=Header)
    orientation: Quaternion = dataclasses.field(default_factory=Quaternion)
    orientation_covariance: array[float64, 9] = dataclasses.field(default_factory=_zeros9)
    angular_velocity: Vector3 = dataclasses.field(default_factory=Vector3)
    angular_velocity_covariance: array[float64, 9] = dataclasses.field(default_factory=_zeros9)
    linear_acceleration: Vector3 = dataclasses.field(default_factory=Vector3)
    linear_acceleration_covariance: array[float64, 9] = dataclasses.field(default_factory=_zeros9)


@_message("sensor_msgs/msg/Image")
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header = dataclasses.field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    encoding: str = ""
    is_bigendian: uint8 = 0
    step: uint32 = 0
    data: sequence[uint8] = b""  # declared as ROS 2 declares it (for DDS type matching); held as bytes

    # cyclonedds' DataWriter and DataReader call these two, so DDS traffic gets the fast path too.
    def serialize(self, buffer: Any = None, endianness: Endianness | None = None,
                  use_version_2: bool | None = None) -> bytes:
        if buffer is not None:  # a caller-owned buffer: leave it to the generic machinery
            return super().serialize(buffer=buffer, endianness=endianness, use_version_2=use_version_2)
        return _encode_image(self, endianness or Endianness.native(), bool(use_version_2))

    @classmethod
    def deserialize(cls, data: Any, has_header: bool = True, use_version_2: bool | None = None) -> "Image":
        if not has_header:
            image = super().deserialize(data, has_header=has_header, use_version_2=use_version_2)
            image.data = bytes(image.data)
            return image
        return _decode_image(data)


# -- trajectory_msgs -------------------------------------------------------------------------

@_message("trajectory_msgs/msg/JointTrajectoryPoint")
class JointTrajectoryPoint(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectoryPoint_"):
    positions: sequence[float64] = dataclasses.field(default_factory=list)
    velocities: sequence[float64] = dataclasses.field(default_factory=list)
    accelerations: sequence[float64] = dataclasses.field(default_factory=list)
    effort: sequence[float64] = dataclasses.field(default_factory=list)
    time_from_start: Duration = dataclasses.field(default_factory=Duration)


@_message("trajectory_msgs/msg/JointTrajectory")
class JointTrajectory(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectory_"):
    header: Header = dataclasses.field(default_factory=Header)
    joint_names: sequence[str] = dataclasses.field(default_factory=list)
    points: sequence[JointTrajectoryPoint] = dataclasses.field(default_factory=list)


# -- names -----------------------------------------------------------------------------------

def message_type(name: "str | type") -> type:
    """The message class for a ROS 2 name (`sensor_msgs/msg/JointState` or `sensor_msgs/JointState`).

    A message class is returned as is (after checking it is one of ours), so callers may
    take either. Unknown names raise ValueError listing the known types.
    """
    if isinstance(name, type):
        if MESSAGE_TYPES.get(getattr(name, "ros_name", None)) is not name:
            raise TypeError(f"{name.__qualname__} is not a daydream.ros.messages type; known: {sorted(MESSAGE_TYPES)}")
        return name
    if not isinstance(name, str):
        raise TypeError(f"a message type is a ROS 2 name or a daydream.ros.messages class, got {name!r}")
    try:
        key = "/".join(_split(name))
    except ValueError:
        key = name
    if key not in MESSAGE_TYPES:
        raise ValueError(f"unknown ROS 2 message type {name!r}: daydream.ros.messages knows {sorted(MESSAGE_TYPES)} "
                         "(add the type there to use it)")
    return MESSAGE_TYPES[key]


def ros_name(msg_or_type: Any) -> str:
    """The ROS 2 name of a message instance or class."""
    cls = msg_or_type if isinstance(msg_or_type, type) else type(msg_or_type)
    return message_type(cls).ros_name


# -- serialized form -------------------------------------------------------------------------

# Encapsulation identifiers (byte 1; byte 0 is 0): classic CDR big/little endian and
# XCDR2 plain (final types) big/little endian; bit 0 is the byte order.
_CDR_BE, _CDR_LE, _CDR2_BE, _CDR2_LE = 0x00, 0x01, 0x06, 0x07


def encode(msg: Any) -> bytes:
    """ROS 2's serialized form of `msg`: CDR little-endian encapsulation header + XCDR1 body."""
    message_type(type(msg))
    try:
        return msg.serialize(endianness=Endianness.Little, use_version_2=False)
    except Exception as exc:  # cyclonedds raises bare Exceptions ("Failed to encode member x") for bad values
        cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
        raise ValueError(f"cannot encode {msg.ros_name}: {exc}{cause}; check field types, fixed array lengths "
                         "and integer ranges") from exc


def decode(msg_type: "type | str", data: Any) -> Any:
    """The message of type `msg_type` (class or ROS 2 name) serialized in `data` (as `encode` makes it).

    Big-endian CDR and XCDR2 encapsulations are accepted too; trailing padding is ignored.
    """
    cls = message_type(msg_type)
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        raise TypeError(f"decode takes the serialized bytes of a {cls.ros_name}, got {type(data).__name__}") from None
    if len(view) < 4 or view[0] != 0 or view[1] not in (_CDR_BE, _CDR_LE, _CDR2_BE, _CDR2_LE):
        head = bytes(view[:4]).hex(" ")
        raise ValueError(f"cannot decode {cls.ros_name}: {len(view)} bytes starting {head!r} do not start with a "
                         "CDR encapsulation header (00 01 for little-endian CDR, as ROS 2 writes)")
    try:
        return cls.deserialize(view if cls is Image else bytes(view))
    except (struct.error, IndexError, UnicodeDecodeError, AssertionError, ValueError) as exc:
        raise ValueError(f"cannot decode {cls.ros_name} from {len(view)} bytes: {type(exc).__name__}: {exc} "
                         "(truncated data, or a different message type)") from exc


def _encode_image(image: Image, endianness: Endianness, version_2: bool) -> bytes:
    # Every Image field aligns to at most 4 bytes, so XCDR1 and XCDR2 bodies are identical,
    # and the 4-byte encapsulation header keeps absolute and body-relative alignment equal.
    e = "<" if endianness == Endianness.Little else ">"
    kind = (_CDR2_BE if version_2 else _CDR_BE) | (1 if e == "<" else 0)
    out = bytearray((0, kind, 0, 0))
    stamp = image.header.stamp
    out += struct.pack(e + "iI", stamp.sec, stamp.nanosec)
    _put_string(out, image.header.frame_id, e)
    _pad4(out)
    out += struct.pack(e + "II", image.height, image.width)
    _put_string(out, image.encoding, e)
    out.append(image.is_bigendian)
    _pad4(out)
    data = image.data
    if not isinstance(data, (bytes, bytearray)):
        data = memoryview(data).cast("B") if _has_buffer(data) else bytes(data)  # list of ints: checks range
    out += struct.pack(e + "II", image.step, len(data))
    return b"".join((out, data))  # the pixels are copied once


def _has_buffer(value: Any) -> bool:
    try:
        memoryview(value)
    except TypeError:
        return False
    return True


def _put_string(out: bytearray, text: str, e: str) -> None:
    _pad4(out)
    raw = text.encode("utf-8")
    out += struct.pack(e + "I", len(raw) + 1)
    out += raw
    out.append(0)


def _pad4(out: bytearray) -> None:
    out += b"\0" * (-len(out) % 4)


def _decode_image(data: Any) -> Image:
    view = memoryview(data).cast("B")
    e = "<" if view[1] & 1 else ">"
    sec, nanosec = struct.unpack_from(e + "iI", view, 4)
    frame_id, pos = _get_string(view, 12, e)
    pos += -pos % 4
    height, width = struct.unpack_from(e + "II", view, pos)
    encoding, pos = _get_string(view, pos + 8, e)
    is_bigendian = view[pos]
    pos += 1 + (-(pos + 1) % 4)
    step, size = struct.unpack_from(e + "II", view, pos)
    pos += 8
    if pos + size > len(view):
        raise ValueError(f"Image data of {size} bytes runs past the end of the {len(view)}-byte message")
    return Image(header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id), height=height, width=width,
                 encoding=encoding, is_bigendian=is_bigendian, step=step, data=bytes(view[pos:pos + size]))


def _get_string(view: memoryview, pos: int, e: str) -> tuple[str, int]:
    pos += -pos % 4
    (size,) = struct.unpack_from(e + "I", view, pos)
    pos += 4
    if size == 0 or pos + size > len(view):
        raise ValueError(f"bad string length {size} at byte {pos - 4}")
    return bytes(view[pos:pos + size - 1]).decode("utf-8"), pos + size


# -- time ------------------------------------------------------------------------------------

_INT32 = (-(2 ** 31), 2 ** 31 - 1)


def stamp_to_time(seconds: float) -> Time:
    """A `builtin_interfaces/Time` for `seconds` (wall clock or sim time), nanosecond resolution."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot make a ROS 2 time stamp from {seconds}")
    sec = math.floor(seconds)
    nanosec = round((seconds - sec) * 1e9)  # the fraction, not seconds * 1e9: keeps float precision
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    if not _INT32[0] <= sec <= _INT32[1]:
        raise ValueError(f"time stamp {seconds} s does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=sec, nanosec=nanosec)


def time_to_seconds(stamp: Time) -> float:
    """Seconds (float) of a `builtin_interfaces/Time` (or Duration)."""
    return stamp.sec + stamp.nanosec * 1e-9
