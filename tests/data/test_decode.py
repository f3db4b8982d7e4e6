"""The training pipeline's decode (simplejpeg when installed, PIL otherwise) gives PIL's pixels."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import femb.data.decode as decode
from femb.data import ImageFolderDataset, ImageLoadError, decode_image, to_face_uint8
from femb.data.bad_images import skipped_images_note


def jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def face(width: int, height: int, mode: str = "RGB") -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), mode="RGB").convert(mode)


def pil_path(data: bytes) -> np.ndarray:
    return to_face_uint8(decode_image(data)).numpy().astype(int)


@pytest.fixture(params=["simplejpeg", "PIL"])
def backend(request, monkeypatch):
    if request.param == "simplejpeg":
        if decode.simplejpeg is None:
            pytest.skip("simplejpeg is not installed")
    else:
        monkeypatch.setattr(decode, "simplejpeg", None)
    return request.param


@pytest.mark.parametrize(
    ("width", "height", "mode"),
    [
        (112, 112, "RGB"),
        (92, 112, "RGB"),
        (112, 80, "RGB"),
        (50, 60, "RGB"),
        (112, 112, "L"),
        (92, 112, "CMYK"),
    ],
)
def test_same_pixels_as_pil(backend, width, height, mode):
    data = jpeg(face(width, height, mode))
    out = decode.decode_face(data)
    assert out.shape == (3, 112, 112) and out.dtype == torch.uint8
    assert np.array_equal(out.numpy().astype(int), pil_path(data))


def test_a_large_jpeg_stays_within_jpeg_tolerance(backend):
    data = jpeg(face(500, 250))  # decoded at 1/2 scale in the DCT domain by simplejpeg
    difference = np.abs(decode.decode_face(data).numpy().astype(int) - pil_path(data))
    assert difference.max() <= 10 and difference.mean() < 1.0


def test_a_broken_jpeg_names_the_image(backend, tmp_path):
    data = jpeg(face(112, 112))
    with pytest.raises(ImageLoadError, match="record 7"):
        decode.decode_face(data[: len(data) // 2], name="record 7")
    with pytest.raises(ImageLoadError, match="record 8"):
        decode.decode_face(b"\xff\xd8\xff\xe0 not a jpeg", name="record 8")
    path = tmp_path / "bad.jpg"
    path.write_bytes(data[:100])
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        decode.load_face(path)


def test_files_read_like_bytes(backend, tmp_path):
    for name, image in (("a.jpg", face(92, 112)), ("b.png", face(92, 112)), ("c.pgm", face(92, 112, "L"))):
        image.save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        assert np.array_equal(decode.load_face(tmp_path / name).numpy(), decode.decode_face(data).numpy())


def test_a_folder_counts_each_bad_file_once_and_names_it(tmp_path):
    for identity in ("a", "b"):
        (tmp_path / identity).mkdir()
        face(112, 112).save(tmp_path / identity / "0.jpg")
    (tmp_path / "a" / "1.jpg").write_bytes(b"\xff\xd8\xff nothing")
    dataset = ImageFolderDataset(tmp_path)
    dataset[1]
    dataset[1]  # known bad now: the count stays
    assert dataset.skipped == 1
    assert skipped_images_note(dataset).startswith("skipped 1 unreadable training images; first: ")
    assert "1.jpg" in skipped_images_note(dataset)
