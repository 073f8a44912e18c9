"""daydream.ros.messages against an independent ROS 2 codec (rosbags), and the rclpy conversion helpers.

For every message type: our bytes decode with rosbags to the same values, rosbags' bytes
decode with ours to the same values, and both serializations are byte-for-byte equal
(so ROS 2 tools, rosbag2 files and `ros2 topic echo` read what daydream writes). The
rclpy helpers are exercised with fake classes shaped like rclpy's generated messages.
"""

from __future__ import annotations

import array as pyarray
import dataclasses
import time
import types

import numpy as np
import pytest

from daydream.ros import messages as m
from daydream.ros import rclpy_backend as rb
from daydream.ros.port import DEFAULT_QOS, LATCHED_QOS, SENSOR_QOS

import rosbags.typesys as rosbags_typesys  # noqa: E402  (test extra: the independent reference codec)
TYPESTORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)

RNG = np.random.default_rng(7)


def _header(frame: str = "base_link", sec: int = 1_700_000_123, nanosec: int = 456_789_012) -> m.Header:
    return m.Header(stamp=m.Time(sec=sec, nanosec=nanosec), frame_id=frame)


def _image(height: int, width: int, frame: str = "camera") -> m.Image:
    pixels = RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return m.Image(header=_header(frame), height=height, width=width, encoding="rgb8", is_bigendian=0,
                   step=width * 3, data=pixels.tobytes())


# Non-trivial values for every type: odd string lengths (alignment padding), empty
# sequences between full ones, negative and extreme integers, non-round floats.
SAMPLES: dict[str, list] = {
    "builtin_interfaces/msg/Time": [m.Time(sec=-3, nanosec=999_999_999), m.Time(sec=2 ** 31 - 1, nanosec=1)],
    "builtin_interfaces/msg/Duration": [m.Duration(sec=12, nanosec=500_000_000)],
    "std_msgs/msg/Header": [_header(), _header(frame="")],
    "std_msgs/msg/Bool": [m.Bool(data=True), m.Bool(data=False)],
    "std_msgs/msg/String": [m.String(data="estop: operator pressed stop (Ω)"), m.String(data="")],
    "std_msgs/msg/MultiArrayDimension": [m.MultiArrayDimension(label="feet", size=4, stride=4)],
    "std_msgs/msg/MultiArrayLayout": [
        m.MultiArrayLayout(dim=[m.MultiArrayDimension(label="rows", size=3, stride=12),
                                m.MultiArrayDimension(label="c", size=4, stride=4)], data_offset=2)],
    "std_msgs/msg/Float64MultiArray": [
        m.Float64MultiArray(layout=m.MultiArrayLayout(dim=[m.MultiArrayDimension(label="joints", size=3, stride=3)]),
                            data=[0.1, -2.5e-7, 1e300]),
        m.Float64MultiArray()],
    "geometry_msgs/msg/Vector3": [m.Vector3(x=0.1, y=-9.81, z=1e-12)],
    "geometry_msgs/msg/Quaternion": [m.Quaternion(x=0.1, y=0.2, z=0.3, w=0.927), m.Quaternion()],
    "geometry_msgs/msg/Twist": [m.Twist(linear=m.Vector3(x=0.5, y=0.0, z=-0.1), angular=m.Vector3(z=0.3))],
    "geometry_msgs/msg/TwistStamped": [
        m.TwistStamped(header=_header("odom"), twist=m.Twist(linear=m.Vector3(x=1.25), angular=m.Vector3(y=-0.5)))],
    "sensor_msgs/msg/JointState": [
        m.JointState(header=_header(), name=[f"FR_{j}_joint" for j in ("hip", "thigh", "calf")],
                     position=[0.1, 0.8, -1.5], velocity=[], effort=[1.5, -2.25, 33.0]),
        m.JointState(header=_header("a"), name=["x"], position=[1.0], velocity=[2.0], effort=[3.0])],
    "sensor_msgs/msg/Imu": [
        m.Imu(header=_header("imu"), orientation=m.Quaternion(x=0.01, y=-0.02, z=0.3, w=0.95),
              orientation_covariance=[float(i) / 7 for i in range(9)],
              angular_velocity=m.Vector3(x=0.1, y=0.2, z=-0.3), angular_velocity_covariance=[-1.0] + [0.0] * 8,
              linear_acceleration=m.Vector3(x=0.3, y=-0.1, z=9.81),
              linear_acceleration_covariance=[1e-3 * i for i in range(9)])],
    "sensor_msgs/msg/Image": [_image(64, 64), _image(3, 5, frame="cam_left"), m.Image()],
    "trajectory_msgs/msg/JointTrajectoryPoint": [
        m.JointTrajectoryPoint(positions=[0.1, 0.2], velocities=[], accelerations=[1.0, -1.0], effort=[],
                               time_from_start=m.Duration(sec=0, nanosec=20_000_000))],
    "trajectory_msgs/msg/JointTrajectory": [
        m.JointTrajectory(header=_header("base"), joint_names=["j1", "joint_two", "j3"],
                          points=[m.JointTrajectoryPoint(positions=[0.1, 0.2, 0.3], velocities=[0.0, 0.0, 0.0],
                                                         time_from_start=m.Duration(sec=1)),
                                  m.JointTrajectoryPoint(positions=[0.4, 0.5, 0.6], effort=[1.0, 2.0, 3.0],
                                                         time_from_start=m.Duration(sec=2, nanosec=5))]),
        m.JointTrajectory()],
}

CASES = [(name, i) for name, samples in SAMPLES.items() for i in range(len(samples))]


# -- a plain-value view of both sides, and ours -> rosbags ------------------------------------

def plain(value):
    """Nested dicts/lists of Python values, for either our messages or rosbags' (numpy) ones."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "__msgtype__"}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


_NUMPY = {"float64": np.float64, "float32": np.float32, "uint8": np.uint8, "int8": np.int8, "uint32": np.uint32,
          "int32": np.int32, "uint16": np.uint16, "int16": np.int16, "uint64": np.uint64, "int64": np.int64,
          "bool": np.bool_}


def to_rosbags(msg, typename: str):
    """Build rosbags' message object from ours, guided by rosbags' own field definitions."""
    nodetypes = rosbags_typesys.base.Nodetype
    kwargs = {}
    for fname, (nodetype, spec) in TYPESTORE.fielddefs[typename][1]:
        value = getattr(msg, fname)
        if nodetype == nodetypes.NAME:
            kwargs[fname] = to_rosbags(value, spec)
        elif nodetype == nodetypes.BASE:
            kwargs[fname] = value
        else:
            (subtype, subspec), _ = spec
            if subtype == nodetypes.NAME:
                kwargs[fname] = [to_rosbags(v, subspec) for v in value]
            elif subspec[0] == "string":
                kwargs[fname] = list(value)
            elif isinstance(value, (bytes, bytearray)):
                kwargs[fname] = np.frombuffer(value, np.uint8)
            else:
                kwargs[fname] = np.array(value, dtype=_NUMPY[subspec[0]])
    return TYPESTORE.types[typename](**kwargs)


# -- registry ---------------------------------------------------------------------------------

def test_every_required_type_is_registered_with_ros2_names():
    assert set(SAMPLES) == set(m.MESSAGE_TYPES)
    for name, cls in m.MESSAGE_TYPES.items():
        assert cls.ros_name == name
        assert m.message_type(name) is cls
        package, _, short = name.split("/")
        assert cls.__idl_typename__ == f"{package}::msg::dds_::{short}_"
        assert m.message_type(f"{package}/{short}") is cls  # the CLI's short form
        ours = [f.name for f in dataclasses.fields(cls)]
        theirs = [fname for fname, _ in TYPESTORE.fielddefs[name][1]]
        assert ours == theirs, f"{name}: field names/order differ from ROS 2's"
        cls()  # every type has defaults for all fields


def test_defaults_are_ros2_defaults_and_fresh_per_instance():
    a, b = m.JointState(), m.JointState()
    a.name.append("x")
    assert b.name == []
    assert m.Imu().orientation_covariance == [0.0] * 9
    assert m.Quaternion().w == 1.0
    assert m.Image().data == b""


def test_unknown_type_names_raise_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown ROS 2 message type 'sensor_msgs/msg/PointCloud2'.*"
                                         r"sensor_msgs/msg/JointState"):
        m.message_type("sensor_msgs/msg/PointCloud2")
    with pytest.raises(ValueError, match="unknown ROS 2 message type 'JointState'"):
        m.message_type("JointState")
    with pytest.raises(TypeError, match="not a daydream.ros.messages type"):
        m.message_type(dict)
    with pytest.raises(TypeError, match="not a daydream.ros.messages type"):
        m.encode({"data": 1})
    with pytest.raises(ValueError, match="unknown ROS 2 message type"):
        m.decode("std_msgs/msg/Float32", b"\x00\x01\x00\x00\x00\x00\x00\x00")


# -- interop with rosbags ----------------------------------------------------------------------

@pytest.mark.parametrize("name,index", CASES)
def test_our_bytes_decode_with_rosbags(name, index):
    msg = SAMPLES[name][index]
    data = m.encode(msg)
    assert data[:4] == b"\x00\x01\x00\x00"  # CDR little endian, as ROS 2 writes
    theirs = TYPESTORE.deserialize_cdr(data, name)
    assert plain(theirs) == plain(msg)


@pytest.mark.parametrize("name,index", CASES)
def test_rosbags_bytes_decode_with_ours_and_match_byte_for_byte(name, index):
    msg = SAMPLES[name][index]
    theirs = bytes(TYPESTORE.serialize_cdr(to_rosbags(msg, name), name, little_endian=True))
    assert m.encode(msg) == theirs
    decoded = m.decode(name, theirs)
    assert type(decoded) is type(msg)
    assert plain(decoded) == plain(msg)
    assert decoded == m.decode(type(msg), m.encode(msg))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_big_endian_cdr_decodes(name):
    msg = SAMPLES[name][0]
    theirs = bytes(TYPESTORE.serialize_cdr(to_rosbags(msg, name), name, little_endian=False))
    assert theirs[:2] == b"\x00\x00"
    assert plain(m.decode(name, theirs)) == plain(msg)


def test_image_fast_codec_matches_the_generic_idl_machinery():
    from cyclonedds.idl import Endianness, IdlStruct

    for image in SAMPLES["sensor_msgs/msg/Image"]:
        generic = IdlStruct.serialize(image, endianness=Endianness.Little, use_version_2=False)
        assert m.encode(image) == generic
        assert m.Image.__idl__.deserialize(generic).data == list(image.data)
        assert isinstance(m.decode(m.Image, generic).data, bytes)
        for version_2 in (False, True):  # what a DataWriter may ask for
            for endianness in (Endianness.Little, Endianness.Big):
                fast = image.serialize(endianness=endianness, use_version_2=version_2)
                assert fast == IdlStruct.serialize(image, endianness=endianness, use_version_2=version_2)
                assert m.Image.deserialize(fast) == image


def test_image_accepts_any_byte_buffer():
    pixels = RNG.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    reference = m.encode(m.Image(height=4, width=6, step=18, encoding="rgb8", data=pixels.tobytes()))
    for data in (pixels, bytearray(pixels.tobytes()), memoryview(pixels.tobytes()), list(pixels.tobytes())):
        assert m.encode(m.Image(height=4, width=6, step=18, encoding="rgb8", data=data)) == reference


def test_image_codec_is_fast():
    image = _image(240, 320)
    timings_encode, timings_decode = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        data = m.encode(image)
        t1 = time.perf_counter()
        back = m.decode(m.Image, data)
        t2 = time.perf_counter()
        timings_encode.append(t1 - t0)
        timings_decode.append(t2 - t1)
    assert back == image
    # the generic path takes ~10 ms to encode and returns a list of 230400 ints
    assert min(timings_encode) < 0.005 and min(timings_decode) < 0.005, (timings_encode, timings_decode)


def test_bad_bytes_raise_value_errors_that_say_what_is_wrong():
    good = m.encode(SAMPLES["sensor_msgs/msg/JointState"][0])
    with pytest.raises(ValueError, match="CDR encapsulation header"):
        m.decode(m.JointState, b"\x01\x02" + good[2:])
    with pytest.raises(ValueError, match="CDR encapsulation header"):
        m.decode(m.JointState, b"\x00")
    with pytest.raises(TypeError, match="decode takes the serialized bytes of a std_msgs/msg/Bool, got str"):
        m.decode(m.Bool, "\x00\x01\x00\x00\x01")
    with pytest.raises(ValueError, match="cannot decode sensor_msgs/msg/JointState"):
        m.decode(m.JointState, good[:30])
    image = m.encode(SAMPLES["sensor_msgs/msg/Image"][0])
    with pytest.raises(ValueError, match="cannot decode sensor_msgs/msg/Image"):
        m.decode(m.Image, image[:-10])
    with pytest.raises(ValueError, match="cannot encode"):
        m.encode(m.Imu(orientation_covariance=[0.0] * 3))
    with pytest.raises(ValueError, match="cannot encode"):
        m.encode(m.Time(sec=2 ** 40))


# -- time helpers ------------------------------------------------------------------------------

def test_stamp_to_time_and_back():
    assert m.stamp_to_time(1.5) == m.Time(sec=1, nanosec=500_000_000)
    assert m.stamp_to_time(-0.25) == m.Time(sec=-1, nanosec=750_000_000)
    assert m.stamp_to_time(2.9999999999) == m.Time(sec=3, nanosec=0)  # rounding carries into seconds
    now = 1_700_000_000.123456
    stamp = m.stamp_to_time(now)
    assert stamp.sec == 1_700_000_000 and abs(stamp.nanosec - 123_456_000) < 1_000
    assert abs(m.time_to_seconds(stamp) - now) < 1e-6
    assert m.time_to_seconds(m.Duration(sec=2, nanosec=250_000_000)) == 2.25
    for bad in (float("nan"), float("inf"), 2.0 ** 31 + 5):
        with pytest.raises(ValueError):
            m.stamp_to_time(bad)


# -- rclpy conversion helpers, with fake rclpy message classes ------------------------------

class FakeRosMessage:
    """Shaped like rclpy's generated classes: slots, get_fields_and_field_types(), typed setters."""

    _fields_and_field_types: dict[str, str] = {}
    __slots__: tuple[str, ...] = ()

    def __init__(self) -> None:
        for name, kind in self._fields_and_field_types.items():
            if kind in FAKE_CLASSES:
                setattr(self, name, FAKE_CLASSES[kind]())
            elif kind.startswith("sequence<") and kind[9:-1] in rb.ARRAY_TYPECODES:
                setattr(self, name, pyarray.array(rb.ARRAY_TYPECODES[kind[9:-1]]))
            elif kind.startswith("double["):
                setattr(self, name, np.zeros(int(kind[7:-1])))
            elif kind.startswith("sequence<"):
                setattr(self, name, [])
            elif kind == "string":
                setattr(self, name, "")
            elif kind == "boolean":
                setattr(self, name, False)
            else:
                setattr(self, name, 0.0 if kind in ("double", "float") else 0)

    @classmethod
    def get_fields_and_field_types(cls) -> dict[str, str]:
        return dict(cls._fields_and_field_types)

    def __setattr__(self, name: str, value) -> None:
        kind = self._fields_and_field_types[name]  # KeyError mimics rclpy's AttributeError for unknown fields
        if kind.startswith("sequence<") and kind[9:-1] in rb.ARRAY_TYPECODES:
            assert isinstance(value, pyarray.array), f"{name}: rclpy wants array.array, got {type(value)}"
        elif kind in FAKE_CLASSES:
            assert type(value) is FAKE_CLASSES[kind], f"{name}: wants {kind}, got {type(value)}"
        object.__setattr__(self, name, value)


def _fake(ros2: str, fields: dict[str, str]) -> type:
    cls = type(ros2.replace("/", "_"), (FakeRosMessage,), {"_fields_and_field_types": fields,
                                                          "__slots__": tuple(fields)})
    FAKE_CLASSES[ros2] = cls
    return cls


FAKE_CLASSES: dict[str, type] = {}
_fake("builtin_interfaces/Time", {"sec": "int32", "nanosec": "uint32"})
_fake("builtin_interfaces/Duration", {"sec": "int32", "nanosec": "uint32"})
_fake("std_msgs/Header", {"stamp": "builtin_interfaces/Time", "frame_id": "string"})
_fake("geometry_msgs/Quaternion", {"x": "double", "y": "double", "z": "double", "w": "double"})
_fake("geometry_msgs/Vector3", {"x": "double", "y": "double", "z": "double"})
_fake("sensor_msgs/Imu", {
    "header": "std_msgs/Header", "orientation": "geometry_msgs/Quaternion", "orientation_covariance": "double[9]",
    "angular_velocity": "geometry_msgs/Vector3", "angular_velocity_covariance": "double[9]",
    "linear_acceleration": "geometry_msgs/Vector3", "linear_acceleration_covariance": "double[9]"})
_fake("sensor_msgs/JointState", {"header": "std_msgs/Header", "name": "sequence<string>",
                                 "position": "sequence<double>", "velocity": "sequence<double>",
                                 "effort": "sequence<double>"})
_fake("sensor_msgs/Image", {"header": "std_msgs/Header", "height": "uint32", "width": "uint32", "encoding": "string",
                            "is_bigendian": "uint8", "step": "uint32", "data": "sequence<uint8>"})
_fake("trajectory_msgs/JointTrajectoryPoint", {
    "positions": "sequence<double>", "velocities": "sequence<double>", "accelerations": "sequence<double>",
    "effort": "sequence<double>", "time_from_start": "builtin_interfaces/Duration"})
_fake("trajectory_msgs/JointTrajectory", {"header": "std_msgs/Header", "joint_names": "sequence<string>",
                                          "points": "sequence<trajectory_msgs/JointTrajectoryPoint>"})
_fake("std_msgs/Bool", {"data": "boolean"})


def fake_resolver(ros2: str) -> type:
    package, _, short = ros2.split("/")
    return FAKE_CLASSES[f"{package}/{short}"]


@pytest.mark.parametrize("name", ["sensor_msgs/msg/Imu", "sensor_msgs/msg/JointState", "sensor_msgs/msg/Image",
                                  "trajectory_msgs/msg/JointTrajectory", "std_msgs/msg/Bool"])
def test_rclpy_conversion_round_trips_through_fake_rclpy_classes(name):
    for msg in SAMPLES[name]:
        ros = rb.to_rclpy(msg, fake_resolver)
        assert type(ros) is fake_resolver(name)
        back = rb.from_rclpy(ros, type(msg))
        assert back == msg
        assert plain(back) == plain(msg)
        if name == "sensor_msgs/msg/Image":
            assert isinstance(ros.data, pyarray.array) and ros.data.tobytes() == msg.data
            assert isinstance(back.data, bytes)


def test_rclpy_conversion_reports_fields_that_do_not_match():
    broken = type("Broken", (FakeRosMessage,), {"_fields_and_field_types": {"data": "boolean", "extra": "int32"},
                                                "__slots__": ("data", "extra")})
    # a field rclpy has and we do not keeps rclpy's default
    assert rb.to_rclpy(m.Bool(data=True), lambda _: broken).data is True
    missing = type("Missing", (FakeRosMessage,), {"_fields_and_field_types": {"value": "boolean"},
                                                  "__slots__": ("value",)})
    with pytest.raises(TypeError, match="std_msgs/msg/Bool.*'data'"):
        rb.from_rclpy(missing(), m.Bool)


def test_rclpy_field_type_parsing():
    assert rb.parse_field_type("sequence<double>") == ("double", "sequence")
    assert rb.parse_field_type("sequence<double, 5>") == ("double", "sequence")
    assert rb.parse_field_type("double[9]") == ("double", "array")
    assert rb.parse_field_type("std_msgs/Header") == ("std_msgs/msg/Header", None)
    assert rb.parse_field_type("sequence<trajectory_msgs/JointTrajectoryPoint>") == (
        "trajectory_msgs/msg/JointTrajectoryPoint", "sequence")
    assert rb.parse_field_type("string<10>") == ("string", None)


def test_qos_maps_to_rclpy_profiles():
    calls = []
    fake_qos = types.SimpleNamespace(
        QoSProfile=lambda **kw: calls.append(kw) or kw,
        HistoryPolicy=types.SimpleNamespace(KEEP_LAST="keep_last"),
        ReliabilityPolicy=types.SimpleNamespace(RELIABLE="reliable", BEST_EFFORT="best_effort"),
        DurabilityPolicy=types.SimpleNamespace(VOLATILE="volatile", TRANSIENT_LOCAL="transient_local"))
    assert rb.qos_profile(SENSOR_QOS, fake_qos) == dict(history="keep_last", depth=5, reliability="best_effort",
                                                        durability="volatile")
    assert rb.qos_profile(LATCHED_QOS, fake_qos)["durability"] == "transient_local"
    assert rb.qos_profile(DEFAULT_QOS, fake_qos)["reliability"] == "reliable"
