"""Every reader of outside bytes, fed arbitrary and forged input: it returns data or raises one clear
``ValueError`` naming the file, never another exception, a hang or an allocation that grows with a
forged length field. Bounded (few examples, a deadline) so the file runs in seconds."""

from __future__ import annotations

import pickle
import struct
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas  # noqa: F401  imported here so that its one-time import is not counted as the reader's
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femb.data import RecordIODataset, load_lfw_pairs, load_pairs_csv, load_verification_bin
from femb.data.recordio import MAGIC, read_index, read_property, scan_records

FUZZ = settings(
    max_examples=60,
    deadline=2000,
    derandomize=True,  # the same inputs on every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
# Inputs are at most a few KB; a reader that allocates more than this trusted a length field.
ALLOCATION_LIMIT = 8 << 20


def outcome(read: Callable[[], object], path: Path) -> object:
    """Run ``read``; allow only success or a ValueError naming ``path``; bound its allocations."""
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read()
    except ValueError as error:
        assert path.name in str(error), f"error does not name the file: {error}"
        return error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < ALLOCATION_LIMIT, f"{peak} bytes allocated reading {path.name}"


def _frame(cflag: int, length: int, body: bytes) -> bytes:
    return struct.pack("<II", MAGIC, cflag << 29 | length) + body


# Frames with the right magic and forged flags/lengths reach deeper than random bytes would.
frames = st.lists(
    st.builds(
        _frame,
        st.integers(0, 3),
        st.one_of(st.integers(0, 64), st.integers(0, (1 << 29) - 1)),
        st.binary(max_size=64),
    ),
    max_size=6,
).map(b"".join)
rec_bytes = st.one_of(st.binary(max_size=512), frames)
idx_bytes = st.one_of(
    st.binary(max_size=256),
    st.lists(st.tuples(st.integers(-2, 300), st.integers(-4, 600)), max_size=8).map(
        lambda rows: "".join(f"{k}\t{o}\n" for k, o in rows).encode()
    ),
)


@FUZZ
@given(rec=rec_bytes, idx=idx_bytes, prop=st.one_of(st.none(), st.binary(max_size=64)))
def test_recordio_dataset_survives_any_bytes(rec, idx, prop):
    with TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "train.rec").write_bytes(rec)
        (folder / "train.idx").write_bytes(idx)
        if prop is not None:
            (folder / "property").write_bytes(prop)

        def read_everything():
            dataset = RecordIODataset(folder)
            return [dataset.load_uint8(i) for i in range(len(dataset))]

        outcome(read_everything, folder / "train")  # errors name train.rec, train.idx or property


@FUZZ
@given(rec=rec_bytes)
def test_scan_records_survives_any_bytes(rec):
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.rec"
        path.write_bytes(rec)
        outcome(lambda: list(scan_records(path)), path)


@FUZZ
@given(idx=idx_bytes, rec_size=st.integers(0, 1 << 40))
def test_read_index_survives_any_bytes(idx, rec_size):
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.idx"
        path.write_bytes(idx)
        outcome(lambda: read_index(path, rec_size), path)


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=64), st.text(alphabet="0123456789,-\n ", max_size=40).map(str.encode))
)
def test_read_property_survives_any_bytes(data):
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "property"
        path.write_bytes(data)
        outcome(lambda: read_property(path), path)


# Pickles that parse, holding odd shapes and types, plus raw bytes and forged BINBYTES8 lengths.
pickled = st.recursive(
    st.one_of(st.binary(max_size=16), st.booleans(), st.integers(-3, 3), st.none(), st.text(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner)),
    max_leaves=10,
).flatmap(lambda obj: st.sampled_from([pickle.dumps(obj, protocol=p) for p in (2, 4, 5)]))
forged_bytes8 = st.integers(0, 1 << 62).map(lambda n: b"\x80\x04\x8e" + struct.pack("<Q", n) + b"abc.")


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), pickled, forged_bytes8))
def test_verification_bin_survives_any_bytes(data):
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.bin"
        path.write_bytes(data)
        outcome(lambda: load_verification_bin(path), path)


pairs_text = st.one_of(
    st.binary(max_size=256),
    st.text(alphabet="0123456789 \tab\n-", max_size=120).map(str.encode),
)


@FUZZ
@given(data=pairs_text)
def test_lfw_pairs_survives_any_bytes(data):
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.txt"
        path.write_bytes(data)
        outcome(lambda: load_lfw_pairs(path, tmp), path)


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), st.text(alphabet='ab,01 \n"#.', max_size=120).map(str.encode)))
def test_pairs_csv_survives_any_bytes(data):
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.csv"
        path.write_bytes(data)
        outcome(lambda: load_pairs_csv(path), path)
