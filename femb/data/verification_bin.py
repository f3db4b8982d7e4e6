"""InsightFace verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), no mxnet.

A ``.bin`` is a pickle of ``(bins, issame_list)``: 2N encoded images (JPEG/PNG bytes; pairs
are images 2k and 2k+1) and N booleans. The files were written by Python 2 (``str`` payloads,
read back as ``bytes``); repacked ones may hold numpy ``uint8`` arrays or use protocol 2, which
spells ``bytes`` as ``_codecs.encode(text, 'latin1')``.

A pickle can run any code it names, and these files are downloaded from file-sharing links,
so they are read by an unpickler that resolves only the few harmless globals above (each
wrapped to refuse odd arguments). Anything else raises :class:`UnsafePickleError` before it
is called.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from femb.data.pairs import PairsDataset
from femb.data.transforms import decode_image, denormalize, to_face_tensor
from femb.fileio import atomic_write, require_regular_file

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar


class UnsafePickleError(ValueError):
    """A pickle that asks for a global a verification ``.bin`` never needs (it could run code)."""


class _Refused(pickle.UnpicklingError):
    """An allowed global called with arguments a verification ``.bin`` never uses."""


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise _Refused(f"_codecs.encode used with {type(text).__name__} and {encoding!r}")
    return text.encode("latin-1", errors)


def _bytes(*args: object) -> bytes:
    # bytes(10**12) would allocate: only empty bytes or copies of a payload are allowed.
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise _Refused("bytes() with arguments other than a payload")


def _bytearray(*args: object) -> bytearray:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and str(args[1]).lower().replace("-", "") == "latin1":
        return bytearray(args[0], "latin-1")  # how protocol 2 spells a bytearray
    raise _Refused("bytearray() with arguments other than a payload")


def _reconstruct(subtype: type, shape: tuple, dtype: bytes) -> np.ndarray:
    if subtype is not np.ndarray:
        raise _Refused(f"numpy array of subtype {subtype!r}")
    if not (isinstance(shape, tuple) and 0 in shape):  # numpy pickles (0,); any other shape allocates
        raise _Refused(f"numpy array skeleton of shape {shape!r}")
    return _np_reconstruct(subtype, shape, dtype)


def _dtype(spec: object, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(spec, str):
        raise _Refused(f"numpy dtype {spec!r}")
    dtype = np.dtype(spec)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise _Refused(f"numpy dtype {spec!r} (only plain numbers and booleans are allowed)")
    return dtype


_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _bytes,
    ("builtins", "bytearray"): _bytearray,
    ("__builtin__", "bytearray"): _bytearray,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: Path):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> object:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"refusing to unpickle {self.source}: it asks for the global {module}.{name}, which a "
                "verification .bin never needs (a pickle can run code; only lists of image bytes and "
                "booleans are accepted)"
            )
        return target


def _as_bytes(item: object, source: Path, index: int) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype in (np.uint8, np.int8) and item.ndim == 1:
        return item.tobytes()
    raise ValueError(f"{source}: image {index} is a {type(item).__name__}, not encoded image bytes")


def _as_bool(item: object, source: Path, index: int) -> bool:
    if isinstance(item, (bool, np.bool_)) or (isinstance(item, (int, np.integer)) and item in (0, 1)):
        return bool(item)
    raise ValueError(f"{source}: issame[{index}] is {item!r}, not a boolean")


class BytesImages(Dataset):
    """Unique encoded images, decoded on access into face tensors."""

    def __init__(self, encoded: Sequence[bytes], name: str = "<bytes>"):
        self.encoded = list(encoded)
        self.name = name

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_face_tensor(decode_image(self.encoded[index], name=f"{self.name}[{index}]"))


def load_verification_bin(path: str | os.PathLike) -> PairsDataset:
    """Read an InsightFace verification ``.bin`` safely; identical images are kept once."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"verification file {path} does not exist")
    require_regular_file(path, "verification file")  # a device or a FIFO: said so, never read
    try:
        data = path.read_bytes()
        # The unpickler allocates a bytes object as long as its length field says before reading it:
        # walk the opcodes first (pickletools reads only what is there), so a forged length is an error.
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
        payload = _RestrictedUnpickler(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except _Refused as refused:
        raise UnsafePickleError(f"refusing to unpickle {path}: {refused}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"cannot read verification file {path}: {message}") from None
    if not (isinstance(payload, (tuple, list)) and len(payload) == 2):
        raise ValueError(f"{path}: expected a pickled (images, issame) pair, got {type(payload).__name__}")
    bins, issame_list = payload
    if not isinstance(bins, (list, tuple)) or not isinstance(issame_list, (list, tuple, np.ndarray)):
        raise ValueError(f"{path}: expected (list of image bytes, list of booleans)")
    issame = np.array([_as_bool(v, path, k) for k, v in enumerate(issame_list)], dtype=bool)
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected {2 * len(issame)})")
    index_of: dict[bytes, int] = {}
    flat = np.fromiter(
        (index_of.setdefault(_as_bytes(item, path, k), len(index_of)) for k, item in enumerate(bins)),
        dtype=np.int64,
        count=len(bins),
    )
    images = BytesImages(list(index_of), name=str(path))
    return PairsDataset(images, flat.reshape(-1, 2), issame, name=path.stem)


def _encode(image: bytes | bytearray | Image.Image | np.ndarray, image_format: str) -> bytes:
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def write_verification_bin(
    path: str | os.PathLike,
    images: Sequence[bytes | Image.Image | np.ndarray],
    issame: Sequence[bool] | np.ndarray,
    image_format: str = "PNG",
) -> Path:
    """Write a ``.bin`` readable by InsightFace and by :func:`load_verification_bin`.

    ``images`` are 2N encoded images (bytes, written as they are) or PIL images / uint8 arrays
    (encoded as ``image_format``); pairs are images 2k and 2k+1. Written atomically.
    """
    path = Path(path)
    flags = [bool(v) for v in np.asarray(issame, dtype=bool).reshape(-1)]
    if len(images) != 2 * len(flags):
        raise ValueError(f"{len(images)} images for {len(flags)} pairs (expected {2 * len(flags)})")
    bins = [_encode(image, image_format) for image in images]
    return atomic_write(path, lambda file: pickle.dump((bins, flags), file, protocol=pickle.HIGHEST_PROTOCOL))


def write_pairs_dataset_bin(path: str | os.PathLike, pairs: PairsDataset, image_format: str = "PNG") -> Path:
    """Write any :class:`PairsDataset` as an InsightFace ``.bin`` (images back to uint8, lossless PNG).

    Each distinct image is read and encoded once, however many pairs hold it, and pickled once
    (the pairs' entries refer to the same bytes), so the file holds it once too.
    """
    encoded: dict[int, bytes] = {}
    images = []
    for first, second in pairs.pairs:
        for index in (int(first), int(second)):
            if index not in encoded:
                item = pairs.images[index]
                tensor = item[0] if isinstance(item, (tuple, list)) else item
                encoded[index] = _encode(denormalize(tensor).permute(1, 2, 0).numpy(), image_format)
            images.append(encoded[index])
    return write_verification_bin(path, images, pairs.issame, image_format=image_format)
