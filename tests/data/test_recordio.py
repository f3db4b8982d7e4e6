"""InsightFace RecordIO without mxnet: framing against the spec, round trips, im2rec files, bad input."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from femb.data import (
    DataFormatError,
    ImageFolderDataset,
    ImageLoadError,
    IndexedRecordWriter,
    RecordIODataset,
    RecordIOWriter,
    open_training_dataset,
    pack_image_folder,
    pack_record,
)
from femb.data.bad_images import skipped_images_note
from femb.data.recordio import frame_record, read_property, scan_records, unpack_record

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)


def _image(seed: int, size: tuple[int, int] = (112, 112), fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 220, 3)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    arr = np.clip(base + 0.5 * xx[..., None] - 0.3 * yy[..., None], 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def _decoded(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1).copy())


def _write_set(folder: Path, images_per_identity: list[list[bytes]]) -> Path:
    with RecordIOWriter(folder) as writer:
        for label, images in enumerate(images_per_identity):
            for data in images:
                writer.add(data, label)
    return folder


# -- the framing, checked against bytes built by hand from the spec --------------------------------


def _hand_frame(cflag: int, part: bytes, pad: bool) -> bytes:
    padding = b"\0" * (-len(part) % 4) if pad else b""
    return struct.pack("<II", MAGIC, cflag << 29 | len(part)) + part + padding


def test_framing_matches_the_spec_byte_for_byte():
    # A whole record: 24-byte IRHeader ('IfQQ': flag 0, label 3.0, id 7, id2 0) + 5 bytes, padded to 32.
    record = struct.pack("<IfQQ", 0, 3.0, 7, 0) + b"hello"
    assert pack_record(3.0, b"hello", id=7) == record
    assert frame_record(record) == _hand_frame(0, record, pad=True)
    assert len(frame_record(record)) == 8 + 32

    # The magic at an aligned position (24) cuts the record: part 1 (cflag 1), the magic dropped,
    # part 2 (cflag 3) padded; a magic at an unaligned position (inside "ab" + magic) stays.
    head = struct.pack("<IfQQ", 0, 1.0, 0, 0)
    tail = b"ab" + MAGIC_BYTES + b"c"
    record = head + MAGIC_BYTES + tail
    expected = _hand_frame(1, head, pad=False) + _hand_frame(3, tail, pad=True)
    assert frame_record(record) == expected

    # Three parts: first, middle (empty: two magics in a row), last.
    record = head + MAGIC_BYTES + MAGIC_BYTES + b"xyz"
    expected = _hand_frame(1, head, False) + _hand_frame(2, b"", False) + _hand_frame(3, b"xyz", True)
    assert frame_record(record) == expected


def test_vector_labels_follow_the_header():
    record = pack_record([4.0, 0.5, 2.0], b"img", id=3, id2=1)
    assert record[:24] == struct.pack("<IfQQ", 3, 0.0, 3, 1)
    assert record[24:36] == struct.pack("<3f", 4.0, 0.5, 2.0)
    header, payload = unpack_record(record)
    assert header.flag == 3 and header.label.tolist() == [4.0, 0.5, 2.0] and payload == b"img"


def _jpeg_holding_magic() -> tuple[bytes, bytes]:
    """A valid JPEG whose comment segment holds the magic twice, at 4-byte-aligned record offsets
    (24-byte IRHeader + 8), and the same JPEG without the comment."""
    plain = _image(1)
    comment = b"xx" + MAGIC_BYTES + MAGIC_BYTES + b"yy"
    segment = b"\xff\xfe" + struct.pack(">H", 2 + len(comment)) + comment
    return plain[:2] + segment + plain[2:], plain


def test_reader_reads_hand_built_multi_part_file(tmp_path):
    # A file built only with struct: record key 5 cut in three parts, then a whole record, key 9.
    jpeg, plain = _jpeg_holding_magic()
    head = struct.pack("<IfQQ", 0, 1.0, 5, 0)
    cut = 24 + 8  # where the first magic stands in the record
    record = head + jpeg
    assert record[cut : cut + 8] == MAGIC_BYTES * 2
    rec = _hand_frame(1, record[:cut], False) + _hand_frame(2, b"", False)
    rec += _hand_frame(3, record[cut + 8 :], True)
    assert frame_record(record) == rec  # the writer frames it the same way
    second = len(rec)
    rec += _hand_frame(0, struct.pack("<IfQQ", 0, 0.0, 9, 0) + _image(2), True)
    (tmp_path / "x.rec").write_bytes(rec)
    (tmp_path / "x.idx").write_text(f"5\t0\n9\t{second}\n")
    assert [offset for offset, _ in scan_records(tmp_path / "x.rec")] == [0, second]
    dataset = RecordIODataset(tmp_path / "x.rec")
    assert dataset.keys.tolist() == [5, 9] and dataset.labels == [1, 0]
    assert dataset.encoded_image(0) == jpeg
    assert torch.equal(dataset.load_uint8(0)[0], _decoded(plain))


# -- round trips -----------------------------------------------------------------------------------


def test_writer_reader_round_trip_insightface_layout(tmp_path):
    images = [[_image(10 * label + k) for k in range(count)] for label, count in enumerate([3, 1, 2])]
    folder = _write_set(tmp_path / "set", images)
    assert sorted(p.name for p in folder.iterdir()) == ["property", "train.idx", "train.rec"]
    assert (folder / "property").read_text() == "3,112,112\n"
    assert read_property(folder / "property") == (3, 112, 112)

    # Record 0: [first identity key, end]; identity records: image-key ranges [first, end).
    records = {unpack_record(r)[0].id: unpack_record(r) for _, r in scan_records(folder / "train.rec")}
    assert records[0][0].label.tolist() == [7.0, 10.0] and records[0][1] == b""
    assert [records[k][0].label.tolist() for k in (7, 8, 9)] == [[1, 4], [4, 5], [5, 7]]
    idx_lines = (folder / "train.idx").read_text().splitlines()
    assert idx_lines[0] == "1\t0" and all(line.count("\t") == 1 for line in idx_lines)

    dataset = RecordIODataset(folder)
    assert len(dataset) == 6 and dataset.labels == [0, 0, 0, 1, 2, 2] and dataset.num_classes == 3
    flat = [data for group in images for data in group]
    for index, data in enumerate(flat):
        image, label = dataset.load_uint8(index)
        assert label == dataset.labels[index] and torch.equal(image, _decoded(data))
    tensor, label = dataset[4]
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 112, 112) and label == 2
    assert torch.allclose(tensor, (_decoded(flat[4]).float() - 127.5) / 127.5)


def test_pack_image_folder_round_trip(tmp_path):
    source = tmp_path / "faces"
    for person in ("ann", "bob", "cyd"):
        (source / person).mkdir(parents=True)
        for k in range(2):
            (source / person / f"{k}.png").write_bytes(_image(hash((person, k)) % 1000, (92, 112), "PNG"))
    (source / "bob" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        summary = pack_image_folder(source, tmp_path / "out", quality=95)
    assert (summary.images, summary.identities, summary.skipped) == (6, 3, 1)
    packed, folder = RecordIODataset(tmp_path / "out"), ImageFolderDataset(source)
    assert packed.labels == [0, 0, 1, 1, 2, 2]
    good = [i for i, (path, _) in enumerate(folder.samples) if path.name != "broken.jpg"]
    for index, source_index in enumerate(good):
        expected = folder.load_uint8(source_index)[0].float()
        assert (packed.load_uint8(index)[0].float() - expected).abs().mean() < 2.0  # JPEG tolerance
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_im2rec_file_without_header_and_vector_labels(tmp_path):
    # im2rec: keys from the .lst, no header record; labels may be vectors (first entry = identity).
    writer = IndexedRecordWriter(tmp_path / "data.rec", tmp_path / "data.idx")
    writer.write(0, pack_record([1.0, 1.0], _image(0)))  # key 0 is an image here, not a header
    writer.write(4, pack_record(0.0, _image(1)))
    writer.write(2, pack_record([1.0, 0.0], _image(2, fmt="PNG")))
    writer.close()
    dataset = open_training_dataset(tmp_path / "data.rec")
    assert isinstance(dataset, RecordIODataset)
    assert dataset.keys.tolist() == [0, 4, 2] and dataset.labels == [1, 0, 1]
    assert torch.equal(dataset.load_uint8(2)[0], _decoded(_image(2, fmt="PNG")))


def test_open_training_dataset_picks_the_reader(tmp_path):
    _write_set(tmp_path / "rec", [[_image(1)], [_image(2)]])
    assert isinstance(open_training_dataset(tmp_path / "rec", train=True), RecordIODataset)
    for person in ("a", "b"):
        (tmp_path / "folder" / person).mkdir(parents=True)
        (tmp_path / "folder" / person / "1.jpg").write_bytes(_image(3))
    assert isinstance(open_training_dataset(str(tmp_path / "folder")), ImageFolderDataset)
    (tmp_path / "one" / "a").mkdir(parents=True)
    (tmp_path / "one" / "a" / "1.jpg").write_bytes(_image(3))
    with pytest.raises(DataFormatError, match="at least 2"):
        open_training_dataset(tmp_path / "one")


def test_dataloader_with_two_workers(tmp_path):
    images = [[_image(5 * label + k) for k in range(5)] for label in range(4)]
    dataset = RecordIODataset(_write_set(tmp_path / "set", images))
    dataset.load_uint8(0)  # the parent opens its handle before the fork: workers must not use it
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    labels = torch.cat([label for _, label in batches]).tolist()
    assert labels == dataset.labels
    first = batches[0][0][0]
    assert torch.allclose(first, (_decoded(images[0][0]).float() - 127.5) / 127.5)
    assert dataset.__getstate__()["_file"] is None


# -- bad input -------------------------------------------------------------------------------------


def test_bad_images_are_skipped_counted_and_named(tmp_path):
    good = _image(1)
    bad = [b"", b"GIF89a rubbish", good[: len(good) // 2]]  # zero-byte, wrong format, truncated JPEG
    folder = _write_set(tmp_path / "set", [[good, bad[0], bad[1]], [_image(2), bad[2]]])
    dataset = RecordIODataset(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset.load_uint8(i) for i in range(len(dataset))]
    assert dataset.skipped == 3 and "record 2" in dataset.first_bad
    assert [label for _, label in items] == [0, 1, 1, 1, 0]  # the next readable image, with its own label
    assert not caught  # counted and named by femb (skipped_images_note), not warned per read
    assert skipped_images_note(dataset).startswith("skipped 3 unreadable training images; first: ")
    strict = RecordIODataset(folder, on_bad_image="error")
    with pytest.raises(ImageLoadError, match=r"train.rec record 2 \(offset \d+\)"):
        strict[1]


def test_truncated_rec_names_the_offset(tmp_path):
    folder = _write_set(tmp_path / "set", [[_image(1), _image(2)], [_image(3)]])
    rec = folder / "train.rec"
    data = rec.read_bytes()
    last = max(int(line.split("\t")[1]) for line in (folder / "train.idx").read_text().splitlines())
    rec.write_bytes(data[:-3])  # the last record loses its end
    with pytest.raises(DataFormatError, match=rf"train.rec is truncated: the record at offset {last} "):
        RecordIODataset(folder)
    rec.write_bytes(data[:100])  # most records are gone: the index points past the end
    with pytest.raises(DataFormatError, match=r"train.idx: line \d+ \(byte \d+\) points at offset \d+"):
        RecordIODataset(folder)


def test_truncated_idx_names_the_line_and_byte(tmp_path):
    folder = _write_set(tmp_path / "set", [[_image(1), _image(2)], [_image(3)]])
    idx = folder / "train.idx"
    text = idx.read_text()
    idx.write_text(text[: text.index("\n") + 2])  # the second line keeps only its key's first digit
    with pytest.raises(DataFormatError, match=r"train.idx: line 2 \(byte \d+\) is not 'key<TAB>offset'"):
        RecordIODataset(folder)


def test_forged_length_is_checked_against_the_file_size(tmp_path):
    rec = struct.pack("<II", MAGIC, (1 << 29) - 1) + b"\0" * 24  # claims 512 MiB in a 32-byte file
    (tmp_path / "f.rec").write_bytes(rec)
    (tmp_path / "f.idx").write_text("0\t0\n")
    with pytest.raises(DataFormatError, match="offset 0 needs 536870911 bytes but the file ends at 32"):
        RecordIODataset(tmp_path / "f.rec")


def test_empty_and_single_identity_sets_are_refused(tmp_path):
    with pytest.raises(DataFormatError, match="1 identity"):
        RecordIODataset(_write_set(tmp_path / "one", [[_image(1), _image(2)]]))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train.rec").write_bytes(b"")
    (tmp_path / "empty" / "train.idx").write_bytes(b"")
    with pytest.raises(DataFormatError, match="lists no records"):
        RecordIODataset(tmp_path / "empty")
    with pytest.raises(DataFormatError, match="neither a folder holding train.rec"):
        RecordIODataset(tmp_path / "nowhere")


# -- the real faces --------------------------------------------------------------------------------


def test_pack_and_read_the_orl_faces(tmp_path, orl_root):
    root = orl_root
    summary = pack_image_folder(root, tmp_path / "orl", quality=95)
    assert (summary.images, summary.identities, summary.skipped) == (400, 40, 0)
    packed, folder = RecordIODataset(tmp_path / "orl"), ImageFolderDataset(root)
    assert packed.labels == folder.labels and packed.num_classes == 40
    for index in range(0, 400, 23):
        a, b = packed.load_uint8(index)[0].float(), folder.load_uint8(index)[0].float()
        assert (a - b).abs().mean() < 2.0 and (a - b).abs().max() < 40
