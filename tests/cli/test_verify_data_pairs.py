"""What `femb data pairs` writes, `femb verify pairs` reads back: a pairs.txt over a folder whose
files do not carry LFW's names (ORL's s1/1.pgm) names the same images as the .bin drawn with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import IMAGE_EXTENSIONS, load_lfw_pairs, load_verification_bin
from femb.data.pairs import PairsDataset, PathImages, lfw_image_names, write_lfw_pairs
from femb.data.transforms import image_files
from femb_cli.main import app

runner = CliRunner()


def test_data_pairs_txt_reads_back_in_verify(orl_root, tmp_path):
    pairs_txt, bin_file = tmp_path / "pairs.txt", tmp_path / "pairs.bin"
    args = ["data", "pairs", str(orl_root), "--pairs-out", str(pairs_txt), "--bin-out", str(bin_file)]
    made = runner.invoke(app, [*args, "--num-pairs", "40", "--folds", "2", "--seed", "3"])
    assert made.exit_code == 0, made.output

    torch.manual_seed(0)
    FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16)).save(tmp_path / "model.pt")
    verify = [
        "verify",
        "pairs",
        str(tmp_path / "model.pt"),
        "--pairs",
        str(pairs_txt),
        "--root",
        str(orl_root),
    ]
    result = runner.invoke(
        app, [*verify, "--folds", "2", "--provider", "cpu", "--no-roc", "--json", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["num_pairs"] == 40

    # The same pairs of the same images as the .bin written beside it (JPEG-encoded there).
    from_txt, from_bin = load_lfw_pairs(pairs_txt, orl_root), load_verification_bin(bin_file)
    assert from_txt.issame.tolist() == from_bin.issame.tolist()
    for (a, b), (c, d) in zip(from_txt.pairs.tolist(), from_bin.pairs.tolist(), strict=True):
        for txt_image, bin_image in ((a, c), (b, d)):
            gap = (from_txt.images[txt_image] - from_bin.images[bin_image]).abs().mean()
            assert float(gap) < 0.05


def test_identity_names_with_whitespace_are_refused(tmp_path):
    pairs = PairsDataset(
        PathImages([tmp_path / "a", tmp_path / "b"]), np.array([[0, 1], [0, 1]]), [True, False]
    )
    with pytest.raises(ValueError, match="holds whitespace"):
        write_lfw_pairs(tmp_path / "p.txt", pairs, [("john doe", 1), ("jane", 1)])
    assert not (tmp_path / "p.txt").exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    folders=st.lists(
        st.lists(
            st.one_of(st.text("abcxyz019_-", min_size=1, max_size=6), st.integers(1, 9).map("lfw{}".format)),
            min_size=1,
            max_size=4,
            unique=True,
        ),
        min_size=2,
        max_size=4,
    ),
    extension=st.sampled_from([".pgm", ".jpg", ".PNG"]),
    data=st.data(),
)
def test_pairs_txt_numbering_round_trips_any_file_names(tmp_path_factory, folders, extension, data):
    """A pairs.txt written with femb's numbering reads back as the same files, whatever the files
    are named: LFW's own names (any extension, with gaps), other names, or a mix."""
    root = tmp_path_factory.mktemp("names")
    for person, stems in enumerate(folders):
        (root / f"id{person}").mkdir()
        for stem in stems:  # "lfw3" stands for LFW's own name of image 3: id0_0003
            stem = f"id{person}_{int(stem[3:]):04d}" if stem.startswith("lfw") else stem
            (root / f"id{person}" / f"{stem}{extension}").write_bytes(b"")
    files = [
        path for person in range(len(folders)) for path in image_files(root / f"id{person}", IMAGE_EXTENSIONS)
    ]
    names = lfw_image_names(root, files)
    same = [(a, b) for a in range(len(files)) for b in range(len(files)) if names[a][0] == names[b][0]]
    different = [(a, b) for a in range(len(files)) for b in range(len(files)) if names[a][0] != names[b][0]]
    chosen = [data.draw(st.sampled_from(same)), data.draw(st.sampled_from(different))]
    pairs = PairsDataset(PathImages(files), np.array(chosen), [True, False])
    write_lfw_pairs(root / "pairs.txt", pairs, names)
    back = load_lfw_pairs(root / "pairs.txt", root)
    read = [(back.images.paths[a], back.images.paths[b]) for a, b in back.pairs.tolist()]
    assert read == [(files[a], files[b]) for a, b in chosen]
