"""Training sets stored as InsightFace RecordIO, read and written without mxnet.

:class:`RecordIODataset` reads an InsightFace set (record 0 holds the identity ranges) or a plain
``im2rec`` file (every record carries its label); :func:`open_training_dataset` picks the reader
for a path. Writing a set is ``femb.data.recordio_pack``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from femb.data.bad_images import BadImages
from femb.data.decode import decode_face
from femb.data.errors import DataFormatError
from femb.data.faces import LabelledFaces
from femb.data.imagefolder import ImageFolderDataset
from femb.data.recordio import (
    read_at,
    read_index,
    read_property,
    read_record,
    unpack_record,
)

ON_BAD_IMAGE_CHOICES = ("skip", "error")
# float32 labels are exact integers only up to 2**24: beyond that a label is corrupt, not an identity.
_MAX_LABEL = 1 << 24


def _check_choice(on_bad_image: str) -> None:
    if on_bad_image not in ON_BAD_IMAGE_CHOICES:
        choices = ", ".join(ON_BAD_IMAGE_CHOICES)
        raise ValueError(f"unknown on_bad_image {on_bad_image!r}; choices: {choices}")


class _NumberedClasses(Sequence[str]):
    """RecordIO sets name no identities: identity ``i`` is called ``"i"`` (no list of millions kept)."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [str(i) for i in range(self.count)[index]]
        return str(range(self.count)[index])


def recordio_paths(path: str | os.PathLike) -> tuple[Path, Path, Path] | None:
    """``(rec, idx, property)`` for a RecordIO folder (holding ``train.rec``) or a ``.rec`` file."""
    path = Path(path)
    rec = path / "train.rec" if path.is_dir() else path
    if rec.suffix != ".rec" or not rec.is_file():
        return None
    return rec, rec.with_suffix(".idx"), rec.parent / "property"


class RecordIODataset(LabelledFaces):
    """Images of an InsightFace RecordIO set: ``dataset[i] -> (float32 3×112×112, label)``.

    ``path`` is a folder with ``train.rec``/``train.idx`` (and optionally ``property``) or a
    ``.rec`` file with its ``.idx`` beside it. Each process (DataLoader worker) opens its own file
    handle on first read. ``on_bad_image="skip"``: a record that cannot be read or decoded is
    replaced by the next readable image and counted, silently, in ``skipped`` (``first_bad``
    describes the first; ``bad_images`` holds all, shared with DataLoader worker processes);
    ``"error"``: the :class:`ValueError` is raised.
    """

    def __init__(self, path: str | os.PathLike, train: bool = False, on_bad_image: str = "skip"):
        _check_choice(on_bad_image)
        paths = recordio_paths(path)
        if paths is None:
            raise DataFormatError(f"{path} is neither a folder holding train.rec nor a .rec file")
        self.rec_path, self.idx_path, property_path = paths
        if not self.idx_path.is_file():
            raise DataFormatError(f"{self.rec_path}: its index {self.idx_path} is missing")
        self.train = bool(train)
        self.on_bad_image = on_bad_image
        self._file: io.RawIOBase | None = None
        self._pid = -1
        self._size = self.rec_path.stat().st_size
        index = read_index(self.idx_path, self._size)
        if not index:
            raise DataFormatError(f"{self.idx_path} lists no records")
        keys = self._image_keys_from_header(index)
        self.keys = np.array(keys if keys is not None else list(index), dtype=np.int64)
        self.offsets = np.array([index[int(k)] for k in self.keys], dtype=np.int64)
        self.labels = self._labels(index, keys is not None)
        # The record at the largest offset ends the file: reading it now turns a truncated .rec
        # into one error at construction instead of bad images mid-epoch.
        read_record(self._fd(), max(index.values()), self._size, str(self.rec_path))
        if len(self.labels) == 0:
            raise DataFormatError(f"{self.rec_path} holds no images")
        num_classes = max(self.labels) + 1
        if property_path.is_file():
            num_classes = max(num_classes, read_property(property_path)[0])
        self.classes = _NumberedClasses(num_classes)
        identities = len(np.unique(self.labels))
        if identities < 2:
            raise DataFormatError(
                f"{self.rec_path} holds {len(self.labels)} images of {identities} identity; "
                "training an identity classifier needs at least 2"
            )
        self.bad_images = BadImages(len(self.labels))
        self._first_bad: str | None = None  # what this process saw first

    # -- reading ---------------------------------------------------------------------------------

    def _fd(self) -> int:
        if self._file is None or self._pid != os.getpid():
            # A descriptor inherited through fork shares nothing we rely on, but never use it:
            # each process opens its own (and pread keeps threads from sharing a position).
            self._file = open(self.rec_path, "rb", buffering=0)
            self._pid = os.getpid()
        return self._file.fileno()

    def close(self) -> None:
        """Close this process's file handle (the next read opens it again)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, -1
        return state

    def _record_at(self, offset: int) -> bytes:
        return read_record(self._fd(), offset, self._size, str(self.rec_path))[0]

    def where(self, index: int) -> str:
        """Where image ``index`` is stored, for messages: file, key and byte offset."""
        return f"{self.rec_path} record {int(self.keys[index])} (offset {int(self.offsets[index])})"

    def encoded_image(self, index: int) -> bytes:
        """The stored (JPEG/PNG) bytes of image ``index``; :class:`DataFormatError` if the record is bad."""
        return unpack_record(self._record_at(int(self.offsets[index])), self.where(index))[1]

    def _decode(self, index: int) -> torch.Tensor:
        return decode_face(self.encoded_image(index), name=self.where(index))

    # -- labels ----------------------------------------------------------------------------------

    def _image_keys_from_header(self, index: dict[int, int]) -> list[int] | None:
        """Keys 1..N-1 when record 0 is InsightFace's header ``[N, end]`` (no image, two labels)."""
        if 0 not in index:
            return None
        header, payload = unpack_record(self._record_at(index[0]), f"{self.rec_path} record 0")
        if header.flag < 2 or payload:
            return None  # an im2rec file: record 0 is an image
        first_identity, end = (float(v) for v in header.label[:2])
        # Keys 0..first_identity-1 are the header and the images: all of them must be in the index.
        if not (1 <= first_identity <= len(index) and first_identity <= end and first_identity.is_integer()):
            raise DataFormatError(
                f"{self.rec_path}: header record 0 holds the ranges {first_identity:g}, {end:g}, which do "
                f"not fit the {len(index)} records of {self.idx_path}"
            )
        keys = list(range(1, int(first_identity)))
        missing = next((k for k in keys if k not in index), None)
        if missing is not None:
            raise DataFormatError(f"{self.idx_path} lacks image record {missing} announced by record 0")
        return keys

    def _labels(self, index: dict[int, int], insightface: bool) -> list[int]:
        # InsightFace sets could be labelled from their identity records alone, but the image
        # records' own labels are what every InsightFace loader trains on: read those (only the
        # header bytes of each record).
        labels = []
        for position, offset in enumerate(self.offsets.tolist()):
            header, _ = unpack_record(self._head_of(offset), self.where(position))
            value = float(header.label if header.flag == 0 else header.label[0])
            if not (0 <= value < _MAX_LABEL and value == int(value)):
                raise DataFormatError(f"{self.where(position)}: label {value:g} is not an identity number")
            labels.append(int(value))
        return labels

    def _head_of(self, offset: int) -> bytes:
        """The start of the record at ``offset``: enough for its IRHeader, without the image."""
        head = read_at(self._fd(), offset, 8 + 24)
        if len(head) == 32 and int.from_bytes(head[4:8], "little") >> 29 == 0:
            flag = int.from_bytes(head[8:12], "little")
            length = int.from_bytes(head[4:8], "little") & ((1 << 29) - 1)
            want = 24 + 4 * flag
            if want <= length and offset + 8 + length <= self._size:
                return head[8:] + (read_at(self._fd(), offset + 32, want - 24) if flag else b"")
        return self._record_at(offset)  # multi-part, short or broken: the full reader says why

    # -- the dataset -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def skipped(self) -> int:
        """Distinct unreadable records found so far, by this process or its DataLoader workers."""
        return len(self.bad_images)

    @property
    def first_bad(self) -> str | None:
        if self._first_bad is None and len(self.bad_images):
            return self.bad_reason(self.bad_images.indices(1)[0])
        return self._first_bad

    def image_name(self, index: int) -> str:
        return self.where(index)

    def bad_reason(self, index: int) -> str | None:
        """Why image ``index`` cannot be read (decoded again: the worker that found it is elsewhere)."""
        try:
            self._decode(index)
        except ValueError as error:
            return str(error)
        return None

    def _mark_bad(self, index: int, error: ValueError) -> None:
        if self.bad_images.add(index) and self._first_bad is None:
            self._first_bad = str(error)

    def load_uint8(self, index: int) -> tuple[torch.Tensor, int]:
        """The uint8 ``3×112×112`` image and its label, after the ``on_bad_image`` policy; no flip."""
        n = len(self.labels)
        for step in range(n):
            candidate = (index + step) % n
            if candidate in self.bad_images:
                continue
            try:
                return self._decode(candidate), self.labels[candidate]
            except ValueError as error:  # DataFormatError (the record) or ImageLoadError (the image)
                if self.on_bad_image == "error":
                    raise
                self._mark_bad(candidate, error)
        raise DataFormatError(f"none of the {n} images in {self.rec_path} can be read")

    def __repr__(self) -> str:
        return (
            f"RecordIODataset({str(self.rec_path)!r}, images={len(self)}, classes={self.num_classes}, "
            f"train={self.train})"
        )


def open_training_dataset(
    path: str | os.PathLike, train: bool = False, on_bad_image: str = "skip"
) -> RecordIODataset | ImageFolderDataset:
    """A RecordIO set for a folder holding ``train.rec`` (or a ``.rec`` file), else an image folder.

    Either way a set with fewer than two identities is refused: there is nothing to classify.
    """
    if recordio_paths(path) is not None:
        return RecordIODataset(path, train=train, on_bad_image=on_bad_image)
    _check_choice(on_bad_image)
    dataset = ImageFolderDataset(path, train=train, on_error="raise" if on_bad_image == "error" else "skip")
    if dataset.num_classes < 2:
        raise DataFormatError(
            f"{path} holds {len(dataset)} images of {dataset.num_classes} identity; training needs at least 2"
        )
    return dataset
