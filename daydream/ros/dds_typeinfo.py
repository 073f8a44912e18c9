"""DDS endpoints without XTypes type information, so stock ROS 2 peers on Fast DDS match them.

Why: cyclonedds-python 11 attaches an XTypes TypeInformation to every reader and writer.
When both sides of a match announce one, Cyclone resolves the peer's type object and
checks assignability; it cannot parse the type objects Fast DDS 3 (ROS 2 Kilted and later,
the `ros-rmw-fastrtps-cpp` wheels) sends for plain sequences (`ddsi_xt_type_init_impl with
invalid type object`), so `JointState`, `Float64MultiArray`, ... never match, both ways.
When one side announces no type information, DDS matches by type name (XTypes 7.6.3.4.2),
which is what the ROS 2 RMWs rely on anyway (rmw_cyclonedds_cpp announces none).

How: Cyclone computes an endpoint's type identifiers from its topic's sertype when the
endpoint is created. The Python binding keeps the serialized TypeInformation and
TypeMapping in its sertype (`ddspy_sertype_t`), and needs them only when a topic is
created (to build the CDR stream descriptor that validates samples). `no_type_information`
hides them for the duration of one reader or writer creation and puts them back; the
topic, its sample checks and later topic creations are unchanged. The fields are found
by their contents, never by a fixed offset alone: the Python type object's address,
followed by the two (pointer, size) pairs whose bytes equal the class's
`__idl__._xt_bytedata`. If that check fails (another cyclonedds build), nothing is
written and the endpoint announces type information as before (logged once).

Hiding and topic creation are serialised by one process-wide lock: a topic created while
the fields are hidden would fail.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

LOCK = threading.RLock()  # held while creating topics and while the type information is hidden
_SCAN_BYTES = 256  # struct ddsi_sertype is ~80 bytes on 64-bit builds; the fields follow it
_warned: list[bool] = []


@functools.lru_cache(maxsize=1)
def _library() -> Any:
    from cyclonedds.__library__ import library_path

    lib = ctypes.CDLL(str(library_path))
    lib.dds_get_entity_sertype.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p)]
    lib.dds_get_entity_sertype.restype = ctypes.c_int32
    return lib


def _fields(topic: Any) -> int | None:
    """The address of the sertype's `typeinfo_ser_data` field, verified by content; None if not found."""
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    sertype = ctypes.c_void_p()
    if _library().dds_get_entity_sertype(topic._ref, ctypes.byref(sertype)) != 0 or not sertype.value:
        return None
    info, tmap = topic.data_type.__idl__._xt_bytedata
    if not info or not tmap:
        return None
    base, want = sertype.value, id(topic.data_type)
    for offset in range(0, _SCAN_BYTES, 8):
        if ctypes.c_uint64.from_address(base + offset).value != want:
            continue
        # my_py_type, then 4 bools (padded to 8), then (typeinfo ptr, size), (typemap ptr, size)
        fields = base + offset + 16
        info_ptr, info_size = _pair(fields)
        map_ptr, map_size = _pair(fields + 16)
        if (info_size == len(info) and map_size == len(tmap) and info_ptr and map_ptr
                and ctypes.string_at(info_ptr, info_size) == info and ctypes.string_at(map_ptr, map_size) == tmap):
            return fields
    return None


def _pair(address: int) -> tuple[int | None, int]:
    return ctypes.c_void_p.from_address(address).value, ctypes.c_uint32.from_address(address + 8).value


def _set_pair(address: int, pointer: int | None, size: int) -> None:
    ctypes.c_void_p.from_address(address).value = pointer
    ctypes.c_uint32.from_address(address + 8).value = size


@contextlib.contextmanager
def no_type_information(topic: Any) -> Iterator[bool]:
    """Within the block, endpoints created on `topic` announce no type information.

    Yields whether the type information is hidden (False: this cyclonedds build's layout
    was not recognised; the endpoint is created with type information).
    """
    with LOCK:
        fields = _fields(topic)
        if fields is None:
            if not _warned:
                _warned.append(True)
                log.warning("cannot hide XTypes type information with this cyclonedds build: DDS endpoints announce "
                            "it, and Fast DDS 3 peers (ROS 2 Kilted+) will not match sequence-typed topics")
            yield False
            return
        saved = (_pair(fields), _pair(fields + 16))
        _set_pair(fields, None, 0)
        _set_pair(fields + 16, None, 0)
        try:
            yield True
        finally:
            _set_pair(fields, *saved[0])
            _set_pair(fields + 16, *saved[1])
