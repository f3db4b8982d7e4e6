"""InsightFace / mxnet RecordIO without mxnet: the framing, the ``IRHeader``, ``.idx`` and ``property``.

A ``.rec`` file is a run of frames: ``uint32 0xced7230a``, ``uint32 cflag << 29 | length``, the
payload, zero padding to 4 bytes (little-endian throughout). A record whose payload holds the magic
at a 4-byte-aligned position is cut there into parts (cflag 1 = first, 2 = middle, 3 = last; 0 = a
whole record); the magic itself is dropped and put back between the parts when reading. Each
record's payload starts with ``IRHeader`` (``struct 'IfQQ'``: flag, label, id, id2); flag > 0
means ``flag`` float32 labels follow and ``label`` is unused. The ``.idx`` file maps keys to byte
offsets, one ``key\\toffset`` line per record.

Every reader here checks a length against the bytes really there before reading, so a forged
length field never allocates more than the file holds, and raises :class:`DataFormatError` naming
the file and the offset.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from femb.data.errors import DataFormatError
from femb.fileio import writable_target, write_failure

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
_MAX_PART = (1 << 29) - 1  # the length field has 29 bits
# Beyond this a `property` or `.idx` line is not what the format writes: refuse instead of reading on.
_MAX_PROPERTY_BYTES = 4096
_MAX_IDX_LINE = 64


@dataclass(frozen=True)
class IRHeader:
    """A record's header: ``label`` is a float, or a float32 vector when ``flag > 0``."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack_record(label: float | np.ndarray | list[float], payload: bytes, id: int = 0, id2: int = 0) -> bytes:
    """``IRHeader`` + payload, as mxnet's ``recordio.pack``: a vector label sets ``flag`` to its length."""
    if np.ndim(label) == 0:
        return _IR.pack(0, float(label), id, id2) + payload
    vector = np.asarray(label, dtype="<f4").reshape(-1)
    return _IR.pack(vector.size, 0.0, id, id2) + vector.tobytes() + payload


def unpack_record(record: bytes, source: str = "<record>") -> tuple[IRHeader, bytes]:
    """Split a record into its ``IRHeader`` and the payload after it (the encoded image)."""
    if len(record) < _IR.size:
        raise DataFormatError(f"{source}: record of {len(record)} bytes is shorter than its 24-byte header")
    flag, label, key, key2 = _IR.unpack_from(record)
    if flag == 0:
        return IRHeader(0, float(label), key, key2), record[_IR.size :]
    end = _IR.size + 4 * flag
    if end > len(record):
        raise DataFormatError(f"{source}: header announces {flag} labels in a record of {len(record)} bytes")
    vector = np.frombuffer(record, dtype="<f4", count=flag, offset=_IR.size).astype(np.float32)
    return IRHeader(flag, vector, key, key2), record[end:]


def frame_record(record: bytes) -> bytes:
    """The bytes of one record as mxnet's ``RecordIOWriter`` lays them out (split, framed, padded)."""
    if len(record) > _MAX_PART:
        raise ValueError(f"a record holds at most {_MAX_PART} bytes, got {len(record)}")
    parts, start = [], 0
    # Only 4-byte-aligned occurrences cut the record: a reader resynchronises on aligned words.
    for at in range(0, len(record) - 3, 4):
        if record[at : at + 4] == _MAGIC_BYTES:
            parts.append(record[start:at])
            start = at + 4
    parts.append(record[start:])
    out = bytearray()
    for number, part in enumerate(parts):
        if len(parts) == 1:
            cflag = 0
        else:
            cflag = 1 if number == 0 else 3 if number == len(parts) - 1 else 2
        out += _FRAME.pack(MAGIC, cflag << 29 | len(part)) + part
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


def read_at(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` (fewer at the end of the file), without moving a shared position."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows: no pread; each process has its own descriptor
    return os.read(fd, size)


def read_record(fd: int, offset: int, file_size: int, source: str) -> tuple[bytes, int]:
    """The whole record starting at ``offset`` (parts joined) and the offset just after it."""
    parts: list[bytes] = []
    position = offset
    while True:
        head = read_at(fd, position, _FRAME.size)
        if len(head) < _FRAME.size:
            raise DataFormatError(f"{source} is truncated: no complete frame header at offset {position}")
        magic, word = _FRAME.unpack(head)
        if magic != MAGIC:
            raise DataFormatError(f"{source}: no record at offset {position} (magic {magic:#010x})")
        cflag, length = word >> 29, word & _MAX_PART
        padded = length + (-length % 4)
        if position + _FRAME.size + padded > file_size:
            raise DataFormatError(
                f"{source} is truncated: the record at offset {position} needs {length} bytes but the file "
                f"ends at {file_size}"
            )
        if (cflag in (0, 1)) != (not parts):
            raise DataFormatError(f"{source}: broken multi-part record at offset {position} (cflag {cflag})")
        if cflag in (1, 2) and length % 4:
            # A first or middle part ends where an aligned magic was cut out: a multiple of 4 bytes.
            raise DataFormatError(f"{source}: record part at offset {position} is not 4-byte aligned")
        parts.append(read_at(fd, position + _FRAME.size, length))
        position += _FRAME.size + padded
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts), position


def scan_records(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Every record of a ``.rec`` file in file order: ``(offset, record)`` (no ``.idx`` needed)."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size, offset = os.fstat(fd).st_size, 0
        while offset < size:
            record, next_offset = read_record(fd, offset, size, str(path))
            yield offset, record
            offset = next_offset
    finally:
        os.close(fd)


def read_index(path: str | os.PathLike, rec_size: int) -> dict[int, int]:
    """The ``.idx`` file as ``{key: offset}``, in file order; every offset must lie inside the ``.rec``."""
    path = Path(path)
    data = path.read_bytes()
    index: dict[int, int] = {}
    position = 0
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        start, position = position, position + len(line) + 1
        if not line.strip():
            continue
        key = offset = -1
        fields = line.split(b"\t")
        if len(fields) == 2 and len(line) <= _MAX_IDX_LINE and all(f.strip().isdigit() for f in fields):
            key, offset = int(fields[0]), int(fields[1])
        if key < 0:
            shown = line[:40].decode("ascii", "replace")
            raise DataFormatError(f"{path}: line {line_no} (byte {start}) is not 'key<TAB>offset': {shown!r}")
        if offset >= rec_size or offset % 4:
            raise DataFormatError(
                f"{path}: line {line_no} (byte {start}) points at offset {offset}, which is "
                + ("past the end of the .rec file" if offset >= rec_size else "not 4-byte aligned")
                + f" ({rec_size} bytes); one of the two files is truncated or they do not belong together"
            )
        if key in index:
            raise DataFormatError(f"{path}: line {line_no} (byte {start}) repeats key {key}")
        index[key] = offset
    return index


def read_property(path: str | os.PathLike) -> tuple[int, int, int]:
    """``property``: ``num_classes,height,width``."""
    path = Path(path)
    with open(path, "rb") as file:
        data = file.read(_MAX_PROPERTY_BYTES + 1)
    try:
        if len(data) > _MAX_PROPERTY_BYTES:
            raise ValueError
        num_classes, height, width = (int(field) for field in data.decode("ascii").strip().split(","))
    except (ValueError, UnicodeDecodeError):
        shown = data[:40].decode("ascii", "replace")
        raise DataFormatError(f"{path}: expected 'num_classes,height,width', got {shown!r}") from None
    if num_classes < 0 or height <= 0 or width <= 0:
        raise DataFormatError(f"{path}: expected positive numbers, got {num_classes},{height},{width}")
    return num_classes, height, width


class IndexedRecordWriter:
    """Writes a ``.rec`` and its ``.idx`` as mxnet's ``MXIndexedRecordIO`` does, into temporary files
    that :meth:`close` renames into place (a crash never leaves a torn pair behind). Any failure
    removes the temporary files; one the file system refuses (a full disk, a file-size limit) is a
    :class:`~femb.fileio.WriteFailedError` naming the file and the free space."""

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike):
        self.rec_path, self.idx_path = writable_target(rec_path), writable_target(idx_path)
        self._rec_tmp = self.rec_path.with_name(self.rec_path.name + ".tmp")
        self._idx_tmp = self.idx_path.with_name(self.idx_path.name + ".tmp")
        self.kept = "the previous set is intact" if self.rec_path.exists() else "nothing was written"
        self._rec = self._idx = None
        try:
            self.rec_path.parent.mkdir(parents=True, exist_ok=True)
            self._rec = open(self._rec_tmp, "wb")  # noqa: SIM115 - closed in close() or abort()
            self._idx = open(self._idx_tmp, "w", encoding="ascii", newline="\n")  # noqa: SIM115
        except OSError as error:
            self.abort()
            raise write_failure(self.rec_path, error, self.kept) from None
        self._keys: set[int] = set()

    def write(self, key: int, record: bytes) -> None:
        if key in self._keys:
            raise ValueError(f"key {key} written twice")
        self._keys.add(key)
        try:
            self._idx.write(f"{key}\t{self._rec.tell()}\n")
            self._rec.write(frame_record(record))
        except OSError as error:
            raise write_failure(self.rec_path, error, self.kept) from None

    def close(self) -> None:
        """Flush and rename the temporary files into place (on failure, remove them)."""
        try:
            for file in (self._rec, self._idx):
                file.flush()
                os.fsync(file.fileno())
                file.close()
            os.replace(self._rec_tmp, self.rec_path)
            os.replace(self._idx_tmp, self.idx_path)
        except OSError as error:
            self.abort()
            raise write_failure(self.rec_path, error, self.kept) from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close and delete the temporary files (closing may fail again on a full disk: they go anyway)."""
        for file, tmp in ((self._rec, self._rec_tmp), (self._idx, self._idx_tmp)):
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()
            tmp.unlink(missing_ok=True)


class RecordIOWriter:
    """An InsightFace training set in ``out_dir``: ``train.rec``, ``train.idx``, ``property``.

    Images get keys 1..N (scalar labels); then, as InsightFace's packers write it, record 0 holds
    ``[N + 1, N + 1 + identities]`` and records N+1... hold each identity's image-key range
    ``[first, end)``. :meth:`add` takes images grouped by identity, labels 0, 1, 2, ... in order.
    """

    def __init__(self, out_dir: str | os.PathLike, image_size: tuple[int, int] = (112, 112)):
        self.out_dir = Path(out_dir)
        self.image_size = image_size
        self._property = writable_target(self.out_dir / "property")
        self._records = IndexedRecordWriter(self.out_dir / "train.rec", self.out_dir / "train.idx")
        self._starts: list[int] = []  # first image key of each identity
        self._next_key = 1

    def add(self, encoded_image: bytes, label: int) -> None:
        """Append one encoded (JPEG/PNG) image of identity ``label``."""
        if label == len(self._starts):
            self._starts.append(self._next_key)
        elif label != len(self._starts) - 1:
            raise ValueError(
                f"labels must come grouped, in order 0, 1, 2, ...: got {label} after {len(self._starts) - 1}"
            )
        self._records.write(self._next_key, pack_record(float(label), encoded_image, id=self._next_key))
        self._next_key += 1

    def close(self) -> None:
        """Write the header and identity records and ``property``, then rename everything into place."""
        end_of_images = self._next_key
        ranges = list(zip(self._starts, self._starts[1:] + [end_of_images], strict=True))
        tmp = self._property.with_name("property.tmp")
        try:
            self._records.write(0, pack_record([end_of_images, end_of_images + len(ranges)], b""))
            for number, (first, end) in enumerate(ranges):
                key = end_of_images + number
                self._records.write(key, pack_record([first, end], b"", id=key))
            height, width = self.image_size
            try:
                tmp.write_text(f"{len(ranges)},{height},{width}\n", encoding="ascii")
            except OSError as error:
                raise write_failure(self._property, error, self._records.kept) from None
            self._records.close()
            os.replace(tmp, self._property)
        except BaseException:
            tmp.unlink(missing_ok=True)
            self._records.abort()
            raise

    def abort(self) -> None:
        self._records.abort()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
