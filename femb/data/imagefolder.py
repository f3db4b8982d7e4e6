"""A folder of identity folders: ``root/<identity>/<image>``, one label per identity."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from femb.data.bad_images import BadImages, skipped_images_note
from femb.data.decode import load_face
from femb.data.faces import LabelledFaces
from femb.data.transforms import (
    ImageLoadError,
    image_files,
    load_image,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp")
ON_ERROR_CHOICES = ("skip", "raise")


class ImageFolderDataset(LabelledFaces):
    """Face images stored one folder per identity.

    ``classes`` are the identity folder names (those holding at least one image), sorted, so
    ``labels`` are stable across runs and machines. Images inside an identity folder are found
    recursively and sorted by path. ``__getitem__`` returns ``(float32 3×112×112 tensor, label)``.

    ``on_error="skip"``: a file that cannot be decoded is replaced by the next readable image of
    the SAME identity (deterministically; only when none of that identity's images can be read,
    by the next readable sample, returned with that sample's own label) and counted, silently:
    ``skipped`` distinct bad files, ``first_bad_path`` the first one, ``bad_images`` all of them,
    shared with DataLoader worker processes so that the main process counts what the workers
    found (:func:`~femb.data.bad_images.skipped_images_note` words it). ``on_error="raise"``: an
    :class:`ImageLoadError` whose one-line message names the file. :meth:`find_unreadable`
    decodes every file once so that a pair builder can leave the bad ones out before it draws
    (see :func:`femb.data.labelled_pairs.pairs_from_labelled`).

    ``cache=True`` decodes every image once, at construction, into one uint8 ``N×3×112×112``
    tensor (37 KB per image: right for small sets such as ORL, not for millions of images).
    ``train=True`` adds a random horizontal flip.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = False,
        on_error: str = "skip",
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        cache: bool = False,
    ):
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"unknown on_error {on_error!r}; choices: {', '.join(ON_ERROR_CHOICES)}")
        self.root = Path(root)
        self.train = bool(train)
        self.on_error = on_error
        self.extensions = tuple(extensions)
        if not self.root.exists():
            raise ValueError(f"image folder {self.root} does not exist")
        if not self.root.is_dir():
            raise ValueError(f"image folder {self.root} is not a directory")

        classes: list[str] = []
        samples: list[tuple[Path, int]] = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            files = image_files(entry.path, self.extensions)
            if files:
                label = len(classes)
                classes.append(entry.name)
                samples.extend((path, label) for path in files)
        if not samples:
            raise ValueError(
                f"no images found in {self.root} (expected one folder per identity holding "
                f"{'/'.join(e.lstrip('.') for e in self.extensions)} files)"
            )
        self.classes = classes
        self.samples = samples
        self.labels = [label for _, label in samples]
        self.bad_images = BadImages(len(samples))
        self._first_bad: tuple[Path, str | None] | None = None  # what this process saw first
        self._scanned = False
        # Each identity's samples are contiguous (added folder by folder): [start, end) by label.
        self._class_starts = [0] * len(classes)
        self._class_ends = [0] * len(classes)
        for index in range(len(samples) - 1, -1, -1):
            self._class_starts[samples[index][1]] = index
        for index, (_, label) in enumerate(samples):
            self._class_ends[label] = index + 1
        self._cache: torch.Tensor | None = None
        if cache:
            self._fill_cache()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def skipped(self) -> int:
        """Distinct unreadable files found so far, by this process or its DataLoader workers."""
        return len(self.bad_images)

    @property
    def first_bad_path(self) -> Path | None:
        if self._first_bad is not None:
            return self._first_bad[0]
        first = self.bad_images.indices(1)
        return self.samples[first[0]][0] if first else None

    @property
    def first_bad_reason(self) -> str | None:
        return self._first_bad[1] if self._first_bad is not None else None

    def image_name(self, index: int) -> str:
        return str(self.samples[index][0])

    def bad_reason(self, index: int) -> str | None:
        """Why image ``index`` cannot be read (decoded again: the worker that found it is elsewhere)."""
        try:
            load_image(self.samples[index][0])
        except ImageLoadError as error:
            return str(error)
        return None

    def _decode(self, index: int) -> torch.Tensor:
        return load_face(self.samples[index][0])

    def _mark_bad(self, index: int, error: BaseException | None = None) -> None:
        if self.bad_images.add(index) and self._first_bad is None:
            self._first_bad = (self.samples[index][0], str(error) if error is not None else None)

    def find_unreadable(self) -> list[int]:
        """The indices of the files that cannot be decoded, each file tried once (cached).

        Costs one decode of every image the first time (none when ``cache=True`` already did it).
        """
        if not self._scanned and self._cache is None:
            for index in range(len(self.samples)):
                if index in self.bad_images:
                    continue
                try:
                    load_image(self.samples[index][0])
                except ImageLoadError as error:
                    self._mark_bad(index, error)
        self._scanned = True
        return self.bad_images.indices()

    def _fill_cache(self) -> None:
        images = []
        for index in range(len(self.samples)):
            try:
                images.append(self._decode(index))
            except ImageLoadError as error:
                if self.on_error == "raise":
                    raise
                self._mark_bad(index, error)
                images.append(torch.zeros((3, 112, 112), dtype=torch.uint8))
        if self.skipped == len(self.samples):
            raise ValueError(f"none of the {len(self.samples)} images in {self.root} can be read")
        note = skipped_images_note(self, "images")
        if note:  # found here, at construction, in the caller's process: said once, where it was asked
            warnings.warn(f"{self.root}: {note}", stacklevel=3)
        # numpy's single-threaded copy: torch.stack's thread pool crawls on a busy few-core machine.
        self._cache = torch.from_numpy(np.stack([image.numpy() for image in images]))

    def load_uint8(self, index: int) -> tuple[torch.Tensor, int]:
        """The uint8 ``3×112×112`` image and its label, after the ``on_error`` policy; no flip.

        A bad file's stand-in comes from its own identity first, so the label stays true."""
        n = len(self.samples)
        label = self.samples[index][1]
        start, end = self._class_starts[label], self._class_ends[label]
        size = end - start
        same_identity = (start + (index - start + step) % size for step in range(size))
        others = ((end + step) % n for step in range(n - size))
        for candidate in itertools.chain(same_identity, others):
            if candidate in self.bad_images:
                continue
            if self._cache is not None:
                return self._cache[candidate], self.samples[candidate][1]
            try:
                return self._decode(candidate), self.samples[candidate][1]
            except ImageLoadError as error:
                if self.on_error == "raise":
                    raise
                self._mark_bad(candidate, error)
        raise ValueError(f"none of the {n} images in {self.root} can be read")

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root={str(self.root)!r}, images={len(self)}, "
            f"classes={self.num_classes}, train={self.train})"
        )
