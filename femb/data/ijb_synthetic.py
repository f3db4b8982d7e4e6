"""A tiny IJB-B/IJB-C-style evaluation set drawn from femb's synthetic faces, in InsightFace's layout.

::

    DIR/loose_crop/<n>.jpg                     loose crops, bigger than 112, the face moved
    DIR/meta/<set>_face_tid_mid.txt            image template media      (one line per face)
    DIR/meta/<set>_name_5pts_score.txt         image x1 y1 … x5 y5 score (same order)
    DIR/meta/<set>_template_pair_label.txt     template1 template2 label (1 genuine, 0 impostor)
    DIR/meta/<set>_1N_gallery_G1.csv, _G2.csv  1:N galleries (TEMPLATE_ID,SUBJECT_ID,FILENAME,...)
    DIR/meta/<set>_1N_probe_mixed.csv          1:N probes, mated with G1 or with G2

``<set>`` is the set name in lower case (``ijbc``), as in InsightFace's release. Each face is a
112×112 synthetic face taken as already aligned: its true five points are ArcFace's destination
points. It is placed in a larger crop by a random similarity (rotation, scale, shift) over a
noise background, and the points written are the destination points moved by that same map, so
aligning a crop from its points gives the synthetic face back (up to interpolation and JPEG).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from femb.data.align import ARCFACE_DST, warp_affine
from femb.data.synthetic import render_face

# The columns of IJB-C's 1:N protocol files (readers need only the first two).
CSV_COLUMNS = (
    "TEMPLATE_ID",
    "SUBJECT_ID",
    "FILENAME",
    "SIGHTING_ID",
    "FACE_X",
    "FACE_Y",
    "FACE_WIDTH",
    "FACE_HEIGHT",
)


@dataclass(frozen=True)
class SyntheticIjbSummary:
    """What :func:`write_ijb_synthetic` wrote."""

    root: Path
    set_name: str
    faces: int
    templates: int
    subjects: int
    pairs: int
    genuine: int


@dataclass(frozen=True)
class _Face:
    name: str
    template: int
    media: int
    subject: int
    points: np.ndarray  # 5×2 in the loose crop
    score: float


def write_ijb_synthetic(
    root: str | os.PathLike,
    set_name: str = "IJBC",
    num_subjects: int = 20,
    templates_per_subject: int = 2,
    media_per_template: int = 2,
    faces_per_media: int = 2,
    seed: int = 0,
    identity_offset: int = 1000,
) -> SyntheticIjbSummary:
    """Write the set under ``root`` and return its counts.

    Every pair of templates is listed (genuine when both show one subject). Subjects are
    identities ``identity_offset ...`` of the synthetic faces (far from the low identities that
    ``synthetic:N`` training sets use). The 1:N gallery G1 holds the first template of the first
    half of the subjects, G2 that of the others; every other template is a probe.
    """
    if num_subjects < 2 or templates_per_subject < 2 or media_per_template < 1 or faces_per_media < 1:
        raise ValueError(
            "num_subjects and templates_per_subject must be at least 2, media_per_template and "
            "faces_per_media at least 1"
        )
    root = Path(root)
    prefix = set_name.lower()
    (root / "loose_crop").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    faces: list[_Face] = []
    template_subject: dict[int, int] = {}
    media = 0
    for subject in range(num_subjects):
        for slot in range(templates_per_subject):
            template = subject * templates_per_subject + slot + 1
            template_subject[template] = subject
            for _ in range(media_per_template):
                media += 1
                for _ in range(faces_per_media):
                    index = len(faces)
                    name = f"{index + 1}.jpg"
                    face = render_face(seed, identity_offset + subject, index)
                    rng = np.random.default_rng([seed, 0x1B, index])
                    loose, points = _loose_crop(face, rng)
                    Image.fromarray(loose).save(root / "loose_crop" / name, quality=95)
                    score = float(rng.uniform(0.6, 1.0))
                    faces.append(_Face(name, template, 100000 + media, subject, points, score))
    _write_meta(root / "meta", prefix, faces)
    pairs = [
        (a, b, int(template_subject[a] == template_subject[b]))
        for a, b in combinations(sorted(template_subject), 2)
    ]
    pair_lines = (f"{a} {b} {label}" for a, b, label in pairs)
    _write_lines(root / "meta" / f"{prefix}_template_pair_label.txt", pair_lines)
    _write_identification_lists(root / "meta", prefix, faces, templates_per_subject, num_subjects)
    return SyntheticIjbSummary(
        root=root,
        set_name=set_name,
        faces=len(faces),
        templates=len(template_subject),
        subjects=num_subjects,
        pairs=len(pairs),
        genuine=sum(label for _, _, label in pairs),
    )


def _loose_crop(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``face`` moved into a bigger square crop over noise, and its five points there."""
    size = int(rng.integers(150, 201))
    angle = math.radians(rng.uniform(-25.0, 25.0))
    scale = rng.uniform(0.9, 1.3)
    centre = np.array([size / 2.0, size / 2.0]) + rng.uniform(-12.0, 12.0, 2)
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shift = centre - rotation @ np.array([55.5, 55.5])  # the face's centre lands on `centre`
    forward = np.hstack([rotation, shift[:, None]])
    moved = warp_affine(face, forward, size).astype(np.float32)
    inside = warp_affine(np.full_like(face, 255), forward, size).astype(np.float32) / 255.0
    background = rng.uniform(30, 220, 3) + rng.normal(0, 18, (size, size, 3))
    loose = moved * inside + background * (1.0 - inside)
    points = ARCFACE_DST @ rotation.T + shift
    return np.clip(loose, 0, 255).astype(np.uint8), points


def _write_lines(path: Path, lines) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _write_meta(meta: Path, prefix: str, faces: list[_Face]) -> None:
    _write_lines(meta / f"{prefix}_face_tid_mid.txt", (f"{f.name} {f.template} {f.media}" for f in faces))
    _write_lines(
        meta / f"{prefix}_name_5pts_score.txt",
        (f"{f.name} {' '.join(f'{v:.4f}' for v in f.points.ravel())} {f.score:.6f}" for f in faces),
    )


def _write_identification_lists(
    meta: Path, prefix: str, faces: list[_Face], templates_per_subject: int, num_subjects: int
) -> None:
    half = num_subjects // 2
    groups = {
        "gallery_G1": lambda f: f.subject < half and _slot(f, templates_per_subject) == 0,
        "gallery_G2": lambda f: f.subject >= half and _slot(f, templates_per_subject) == 0,
        "probe_mixed": lambda f: _slot(f, templates_per_subject) != 0,
    }
    for group, chosen in groups.items():
        with (meta / f"{prefix}_1N_{group}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for face in filter(chosen, faces):
                row = [face.template, face.subject + 1, f"loose_crop/{face.name}", face.media, 0, 0, 0, 0]
                writer.writerow(row)


def _slot(face: _Face, templates_per_subject: int) -> int:
    return (face.template - 1) % templates_per_subject


__all__ = ["CSV_COLUMNS", "SyntheticIjbSummary", "write_ijb_synthetic"]
