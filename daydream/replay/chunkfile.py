"""One chunk on disk: its file name, its durable write and its memory-mapped read.

A chunk is one uncompressed, 64-byte-aligned `.npz`, written atomically and mapped without copying.
"""

from __future__ import annotations

import dataclasses
import mmap
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

from daydream.atomic import atomic_write, temp_path

SUFFIX = ".npz"
TEMP_SUFFIX = ".tmp"
MAX_ID_LENGTH = 100
_ID = re.compile(r"[A-Za-z0-9_.\-]+")
_NAME = re.compile(r"(\d{12,})-([A-Za-z0-9_.\-]+)-(\d{8,})-(\d+)(?:@([A-Za-z0-9_.\-]+))?\.npz")
_ALIGN = 64
_ALIGN_EXTRA_ID = 0xD935
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_ZIP64_EXTRA_BYTES = 20  # added by zipfile to every local header written with force_zip64


def check_id(value: str, what: str) -> str:
    """Return `value` if it is usable inside a chunk file name, else raise ValueError."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{what} {value!r} is not valid: use 1-{MAX_ID_LENGTH} characters from [A-Za-z0-9_.-]")
    return value


@dataclasses.dataclass(frozen=True)
class ChunkName:
    """A chunk's file name: `{seq:012d}-{stream}-{index:08d}-{length}[@{label}].npz`. `seq` is the
    directory-wide creation order (eviction order), `index` the chunk's position in its
    stream (a gap means a chunk is missing, so the data on either side is not
    consecutive), `length` the number of steps, and `label` an optional client-chosen
    chunk name used to drop retransmitted chunks. Stream ids and labels are restricted to
    [A-Za-z0-9_.-]; the fixed numeric fields at both ends keep the name unambiguous even
    though a stream id may itself contain '-'.
    """

    seq: int
    stream: str
    index: int
    length: int
    label: str | None = None

    @property
    def filename(self) -> str:
        label = f"@{self.label}" if self.label else ""
        return f"{self.seq:012d}-{self.stream}-{self.index:08d}-{self.length}{label}{SUFFIX}"

    @property
    def temp_filename(self) -> str:
        return f".{self.filename}{TEMP_SUFFIX}"

    @staticmethod
    def parse(filename: str) -> ChunkName | None:
        """The name's fields, or None if `filename` is not a chunk file name."""
        m = _NAME.fullmatch(filename)
        if not m:
            return None
        seq, stream, index, length, label = m.groups()
        return ChunkName(int(seq), stream, int(index), int(length), label)


@dataclasses.dataclass(frozen=True)
class ArrayLayout:
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype


ChunkLayout = dict[str, ArrayLayout]


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(SUFFIX + TEMP_SUFFIX)


def remove_temp_files(directory: Path) -> list[Path]:
    """Delete half-written chunks left by a crash; returns what was deleted."""
    removed = []
    for path in directory.iterdir():
        if is_temp_file(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_chunk(directory: Path, name: ChunkName, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` durably as `directory/name.filename` and return its path.

    Format: each chunk is one UNCOMPRESSED `.npz` (a ZIP archive with ZIP_STORED
    members, one `<key>.npy` per key, arrays [N, ...]). We chose this over a folder of
    `.npy` files because:

    * one file per chunk makes the atomic commit a plain `os.replace` of a file
      (renaming a folder over nothing is atomic too, but cleaning up half-written temp
      folders and fsyncing every member and both directories is more to get right);
    * one file per chunk means one open file descriptor per mapped chunk instead of one
      per key (`mmap` keeps a dup of the descriptor, and a 1M-step replay has ~1000 chunks);
    * the files stay readable with a plain `np.load(path)` for debugging and tools.

    Durability: a chunk is written to `.<name>.tmp` in the same directory, flushed and
    fsync'd, `os.replace`d to `<name>` and the directory fsync'd. A file under a final
    name is therefore always complete; a crash leaves at most a temp file, which
    `remove_temp_files` deletes on the next start.
    """
    final = directory / name.filename
    assert temp_path(final).name == name.temp_filename  # remove_temp_files relies on the same naming
    atomic_write(final, lambda f: _write_npz(f, arrays))
    return final


def _write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    # Not np.savez: it takes keys as keyword arguments (a key named "file" would clash)
    # and cannot align the members.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            member = f"{key}.npy"
            info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.extra = _align_extra(f.tell(), member)
            with zf.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)


def _align_extra(header_offset: int, member: str) -> bytes:
    # The .npy header is padded to a multiple of 64 bytes, so aligning the start of the
    # member's data aligns the array itself.
    unpadded = header_offset + _LOCAL_HEADER.size + len(member.encode()) + _ZIP64_EXTRA_BYTES
    pad = -unpadded % _ALIGN
    if pad < 4:  # an extra field needs at least its 4-byte id + size
        pad += _ALIGN
    return struct.pack("<HH", _ALIGN_EXTRA_ID, pad - 4) + bytes(pad - 4)


def read_layout(path: Path) -> ChunkLayout:
    """Where each key's array lives in a chunk file; raises ValueError if the file is not a valid chunk.

    `np.load(..., mmap_mode="r")` cannot map zip members, so `read_layout` walks the zip
    directory once to find where each member's array bytes start (local header + `.npy`
    header), and `map_chunk` maps the whole file once and views each key at its offset.
    When writing, each member's local header gets a padding extra field (the 0xD935 id
    that Android's zipalign uses; zip readers skip unknown extra fields) so every array
    starts 64-byte aligned in the file, and therefore in the mapping.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            layout: ChunkLayout = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not an .npy array")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"member {info.filename!r} is compressed; chunks must be stored uncompressed "
                                     "to be memory-mapped")
                f.seek(info.header_offset)
                header = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
                if header[0] != b"PK\x03\x04":
                    raise ValueError(f"member {info.filename!r} has no local file header")
                start = info.header_offset + _LOCAL_HEADER.size + header[9] + header[10]
                f.seek(start)
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                if dtype.hasobject:
                    raise ValueError(f"member {info.filename!r} holds Python objects")
                offset = f.tell()
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if offset - start + nbytes != info.file_size or offset + nbytes > size:
                    raise ValueError(f"member {info.filename!r} is truncated")
                if fortran and len(shape) > 1:
                    raise ValueError(f"member {info.filename!r} is Fortran-ordered")
                layout[info.filename[:-4]] = ArrayLayout(offset, tuple(shape), dtype)
    except (OSError, zipfile.BadZipFile, EOFError, struct.error) as e:
        raise ValueError(f"{path.name}: {e}") from e
    if not layout:
        raise ValueError(f"{path.name}: holds no arrays")
    return layout


def map_chunk(path: Path, layout: ChunkLayout) -> dict[str, np.ndarray]:
    """Read-only arrays viewing a memory map of the file; the OS page cache holds the data."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return {key: np.ndarray(a.shape, a.dtype, buffer=mapped, offset=a.offset) for key, a in layout.items()}
