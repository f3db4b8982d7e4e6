"""1:N identification against a hand-made case on the unit circle, and the protocol CSV reader."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femb.data import DataFormatError
from femb.evaluation.identification import identification_metrics, read_template_list, template_rows


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_rank_and_tpir_on_a_hand_made_case():
    # Gallery: subjects 1, 2, 3 at 0°, 90°, 180°; subject 2 has a second template at 100°.
    gallery = np.array([_unit(0), _unit(90), _unit(100), _unit(180)])
    gallery_subjects = np.array([1, 2, 2, 3])
    # Probes (subject, angle): cosines to the subjects 1 / 2 (best of 90°, 100°) / 3
    #   p0 subject 1 at 10°:   0.985 / cos 80 = 0.174 / -0.985      → rank 1, score 0.985
    #   p1 subject 2 at 50°:   0.643 / cos 40 = 0.766 / -0.643      → rank 1, score 0.766
    #   p2 subject 3 at 60°:   0.5   / cos 30 = 0.866 / -0.5        → rank 3, true score -0.5
    #   p3 subject 1 at 85°:   0.087 / cos 5  = 0.996 / -0.087      → rank 2
    #   p4 subject 9 at 135°:  non-mated, top score cos 35 = 0.819 (subject 2's 100°)
    #   p5 subject 8 at -45°:  non-mated, top score cos 45 = 0.707 (subject 1)
    probes = np.array([_unit(10), _unit(50), _unit(60), _unit(85), _unit(135), _unit(-45)])
    probe_subjects = np.array([1, 2, 3, 1, 9, 8])
    result = identification_metrics(gallery, gallery_subjects, probes, probe_subjects, fpirs=(0.0, 0.5, 1.0))
    assert (result["num_mated"], result["num_nonmated"], result["num_gallery_subjects"]) == (4, 2, 3)
    assert result["rank_1"] == pytest.approx(2 / 4)
    assert result["rank_5"] == pytest.approx(1.0)
    tpir = result["tpir_at_fpir"]
    # FPIR 0: threshold = the highest non-mated top score 0.819: only p0 (0.985) is above it.
    assert tpir["0"] == pytest.approx(1 / 4)
    # FPIR 0.5: one non-mated probe may pass; threshold 0.707: p0 and p1 (0.766) are above it.
    assert tpir["0.5"] == pytest.approx(2 / 4)
    # FPIR 1: no threshold; every rank-1 mated probe counts.
    assert tpir["1"] == pytest.approx(2 / 4)


def test_a_gallery_without_non_mated_probes_has_no_tpir():
    gallery = np.array([_unit(0), _unit(90)])
    result = identification_metrics(gallery, np.array([1, 2]), np.array([_unit(5)]), np.array([1]))
    assert result["rank_1"] == 1.0 and result["tpir_at_fpir"]["0.01"] is None


def test_template_list_reader(tmp_path):
    path = tmp_path / "ijbc_1N_gallery_G1.csv"
    path.write_text(
        "TEMPLATE_ID,SUBJECT_ID,FILENAME\n5,1,img/1.jpg\n5,1,img/2.jpg\n3,2,img/3.jpg\n",
    )
    listed = read_template_list(path)
    assert listed.templates.tolist() == [5, 3] and listed.subjects.tolist() == [1, 2]
    assert listed.lines.tolist() == [2, 4]
    assert template_rows(listed, np.array([3, 4, 5])).tolist() == [2, 0]
    with pytest.raises(DataFormatError, match=r"G1\.csv:4: template 3 has no faces"):
        template_rows(listed, np.array([5, 7]))
    path.write_text("TEMPLATE_ID,SUBJECT_ID\n5,1\n5,2\n")
    with pytest.raises(DataFormatError, match=r"G1\.csv:3: template 5 listed under subject 2"):
        read_template_list(path)
    path.write_text("TEMPLATE_ID,SUBJECT_ID\n5,1\nx,2\n")
    with pytest.raises(DataFormatError, match=r"G1\.csv:3: TEMPLATE_ID 'x' is not an integer"):
        read_template_list(path)
    path.write_text("TEMPLATE,SUBJECT_ID\n5,1\n")
    with pytest.raises(DataFormatError, match="no TEMPLATE_ID column"):
        read_template_list(path)


_cell = st.one_of(st.integers(-3, 3).map(str), st.text(alphabet='ab1.," \n-', max_size=4))
_rows = st.lists(st.lists(_cell, min_size=1, max_size=4).map(",".join), max_size=6)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["TEMPLATE_ID,SUBJECT_ID,FILENAME", "TEMPLATE_ID,SUBJECT_ID", "X,Y"]), _rows)
def test_any_template_list_reads_or_raises_a_named_error(tmp_path_factory, header, rows):
    path = tmp_path_factory.mktemp("csv") / "list.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    try:
        listed = read_template_list(path)
    except DataFormatError as error:
        assert str(error).startswith(str(path))
    else:
        assert len(listed.templates) == len(set(listed.templates.tolist())) == len(listed.subjects)
