"""InsightFace .bin files: round trip, legacy encodings, and refusal of code-running pickles."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from femb.data import UnsafePickleError, load_verification_bin, write_verification_bin


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (112, 112)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_round_trip_decodes_and_dedupes(tmp_path):
    red, green, blue = _jpeg((220, 20, 20)), _jpeg((20, 220, 20)), _jpeg((20, 20, 220))
    images = [red, green, red, blue, np.full((50, 40, 3), 128, np.uint8), Image.new("L", (112, 112), 30)]
    path = write_verification_bin(tmp_path / "tiny.bin", images, [False, False, True])
    pairs = load_verification_bin(path)
    assert pairs.name == "tiny" and len(pairs) == 3
    assert pairs.issame.tolist() == [False, False, True]
    assert len(pairs.images) == 5  # the second red image is the same bytes: kept once
    assert pairs.pairs.tolist() == [[0, 1], [0, 2], [3, 4]]
    first = pairs.images[0]
    assert first.shape == (3, 112, 112) and first.dtype == torch.float32
    assert first[0].mean() > 0.5 and first[1].mean() < -0.5  # red decoded as red (RGB order)
    letterboxed = pairs.images[3]  # the 40×50 array: grey in the middle, black side bands
    assert letterboxed[:, 56, 56].tolist() == pytest.approx([0.5 / 127.5] * 3)
    assert (letterboxed[:, :, :10] == -1).all()
    assert torch.allclose(pairs.images[4], torch.full((3, 112, 112), (30 - 127.5) / 127.5), atol=1e-6)


@pytest.mark.parametrize("protocol", [2, 4])
def test_legacy_layouts_load(tmp_path, protocol):
    # Python-2-era files use protocol 2 (bytes spelled via _codecs.encode); repacks may hold
    # numpy uint8 buffers, bytearrays and numpy booleans.
    a, b = _jpeg((10, 200, 10)), _jpeg((200, 10, 10))
    bins = [a, bytearray(b), np.frombuffer(a, dtype=np.uint8), b]
    path = tmp_path / f"legacy{protocol}.bin"
    path.write_bytes(pickle.dumps((bins, np.array([True, False])), protocol=protocol))
    pairs = load_verification_bin(path)
    assert pairs.issame.tolist() == [True, False]
    assert len(pairs.images) == 2 and pairs.pairs.tolist() == [[0, 1], [0, 1]]


class _Exploit:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, capfd):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Exploit(f"echo pwned; touch {marker}"), b"x"], [True])))
    with pytest.raises(UnsafePickleError) as info:
        load_verification_bin(path)
    message = str(info.value)
    assert str(path) in message and "system" in message and "\n" not in message
    assert isinstance(info.value, ValueError)
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out


@pytest.mark.parametrize(
    "payload",
    [
        (np.array([b"x"], dtype=object), [True]),  # object arrays could hide anything
        (eval, [True]),  # any other global
    ],
)
def test_other_globals_are_refused(tmp_path, payload):
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError) as info:
        load_verification_bin(path)
    assert str(path) in str(info.value)


def test_malformed_files_are_one_line_errors(tmp_path):
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(pickle.dumps(([b"a", b"b"], [True]))[:-5])
    wrong_count = tmp_path / "count.bin"
    wrong_count.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    not_bytes = tmp_path / "ints.bin"
    not_bytes.write_bytes(pickle.dumps(([1, 2], [True])))
    for path in (truncated, wrong_count, not_bytes, tmp_path / "missing.bin"):
        with pytest.raises(ValueError) as info:
            load_verification_bin(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        write_verification_bin(tmp_path / "w.bin", [b"a", b"b", b"c"], [True])


def test_a_pairs_set_is_written_with_each_distinct_image_read_encoded_and_stored_once(tmp_path):
    """The demo's 2,000 pairs over 600 faces: 600 encodes, not 4,000 (and a file a sixth the size)."""
    from femb.data.pairs import PairsDataset
    from femb.data.transforms import normalize
    from femb.data.verification_bin import write_pairs_dataset_bin

    class Counting(torch.utils.data.Dataset):
        def __init__(self):
            gen = torch.Generator().manual_seed(0)
            self.pixels = torch.randint(0, 256, (5, 3, 112, 112), generator=gen, dtype=torch.uint8)
            self.reads = 0

        def __len__(self):
            return len(self.pixels)

        def __getitem__(self, index):
            self.reads += 1
            return normalize(self.pixels[index])

    images = Counting()
    pairs = np.array([[0, 1], [0, 2], [1, 2], [3, 4], [0, 4], [3, 3]])
    issame = np.array([True, False, True, False, False, True])
    path = write_pairs_dataset_bin(tmp_path / "pairs.bin", PairsDataset(images, pairs, issame))
    assert images.reads == 5
    with open(path, "rb") as file:  # what InsightFace's load_bin does: a plain unpickling
        bins, flags = pickle.load(file, encoding="bytes")
    assert len(bins) == 12 and bins[0] is bins[2] and flags == issame.tolist()
    back = load_verification_bin(path)
    for (a, b), (x, y) in zip(pairs, back.pairs, strict=True):
        assert torch.equal(back.images[int(x)], normalize(images.pixels[a]))
        assert torch.equal(back.images[int(y)], normalize(images.pixels[b]))
