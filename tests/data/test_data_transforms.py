"""Decoding any image mode to RGB and the face tensor format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from femb.data import (
    ImageLoadError,
    decode_image,
    denormalize,
    fit_to_face,
    hflip,
    load_image,
    to_face_tensor,
    to_face_uint8,
)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA", "CMYK"])
def test_load_image_any_mode_gives_rgb(tmp_path, mode):
    img = Image.new(mode, (40, 30))
    path = tmp_path / ("x.tif" if mode in ("I;16", "CMYK") else "x.png")
    img.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (40, 30)


def test_grayscale_pgm_becomes_three_equal_channels(tmp_path):
    gray = np.arange(92 * 112, dtype=np.uint32).reshape(112, 92) % 256
    path = tmp_path / "face.pgm"
    Image.fromarray(gray.astype(np.uint8), mode="L").save(path)
    tensor = to_face_tensor(load_image(path))
    assert tensor.shape == (3, 112, 112) and tensor.dtype == torch.float32
    assert torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2])


def test_letterbox_keeps_aspect_and_pads_black():
    # A white 92×112 image: the face spans the full height, columns 10..101, black at the sides.
    out = np.asarray(fit_to_face(Image.new("RGB", (92, 112), (255, 255, 255))))
    assert out.shape == (112, 112, 3)
    assert (out[:, 10:102] == 255).all()
    assert (out[:, :10] == 0).all() and (out[:, 102:] == 0).all()
    wide = np.asarray(fit_to_face(Image.new("RGB", (224, 112), (255, 255, 255))))
    assert wide.shape == (112, 112, 3)
    assert (wide[28:84] == 255).all() and (wide[:28] == 0).all()


def test_face_tensor_value_range_and_round_trip():
    arr = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    tensor = to_face_tensor(arr)
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert tensor[:, 0, 0].tolist() == pytest.approx(((arr[0, 0] - 127.5) / 127.5).tolist())
    assert torch.equal(denormalize(tensor), to_face_uint8(arr))


def test_non_uint8_array_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        to_face_tensor(np.zeros((112, 112, 3), dtype=np.float32))


def test_hflip_single_and_batch():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4)
    assert torch.equal(hflip(x)[..., 0], x[..., -1])
    assert torch.equal(hflip(x[0]), hflip(x)[0])
    assert torch.equal(hflip(hflip(x)), x)


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    with pytest.raises(ImageLoadError, match="lfw.bin\\[3\\]"):
        decode_image(b"garbage", name="lfw.bin[3]")
