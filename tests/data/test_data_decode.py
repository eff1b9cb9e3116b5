"""Image decoding of ImageFolder: every PNG colour type and bit depth becomes correct 8-bit RGB, and
files that cannot be decoded fail with a DatasetError that names them."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from sslfast.data_pipelines.datasets import DatasetError, ImageFolder, _to_rgb8


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, pixels: np.ndarray, bit_depth: int, color_type: int) -> None:
    """PNG bytes written by hand: PIL cannot write 16-bit RGB, RGBA or gray+alpha."""
    h, w = pixels.shape[:2]
    rows = pixels.astype(">u2" if bit_depth == 16 else "u1").reshape(h, -1)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def _one(tmp_path, name, write):
    (tmp_path / "root" / "cls").mkdir(parents=True)
    path = tmp_path / "root" / "cls" / name
    write(path)
    return ImageFolder(tmp_path / "root"), path


RNG = np.random.default_rng(0)
V16 = RNG.integers(0, 65536, (5, 7, 4)).astype(np.uint16)
V8 = RNG.integers(0, 256, (5, 7, 4)).astype(np.uint8)


def _to8(v16):
    return np.rint(v16 / 257.0).astype(np.uint8)


@pytest.mark.parametrize(
    "name,pixels,depth,ctype,expected,tol",
    [
        # 16-bit grayscale: PIL opens it as I;16 and its convert("RGB") clips to 255; ours scales exactly
        ("gray16.png", V16[..., 0], 16, 0, np.repeat(_to8(V16[..., :1]), 3, 2), 0),
        # PIL itself reduces the other 16-bit types to their high byte: within 1 of rounding
        ("rgb16.png", V16[..., :3], 16, 2, _to8(V16[..., :3]), 1),
        ("rgba16.png", V16, 16, 6, _to8(V16[..., :3]), 1),
        ("gray_alpha16.png", V16[..., :2], 16, 4, np.repeat(_to8(V16[..., :1]), 3, 2), 1),
        ("gray8.png", V8[..., 0], 8, 0, np.repeat(V8[..., :1], 3, 2), 0),
        ("rgb8.png", V8[..., :3], 8, 2, V8[..., :3], 0),
        ("rgba8.png", V8, 8, 6, V8[..., :3], 0),  # alpha dropped, as torchvision's loader
    ],
)
def test_png_colour_types_and_bit_depths(tmp_path, name, pixels, depth, ctype, expected, tol):
    folder, _ = _one(tmp_path, name, lambda p: write_png(p, pixels, depth, ctype))
    img = folder[0][0]
    assert img.dtype == torch.uint8 and img.shape == (3, 5, 7)
    diff = (img.permute(1, 2, 0).int() - torch.from_numpy(expected).int()).abs().max()
    assert int(diff) <= tol


def test_16bit_grayscale_resized_keeps_the_scale(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    folder, _ = _one(tmp_path, "ramp.png", lambda p: write_png(p, ramp, 16, 0))
    ds = folder.load(8)
    assert ds.images.shape == (1, 3, 8, 8)
    row = ds.images[0, 0, 4].int()
    assert (row[1:] >= row[:-1]).all() and int(row[0]) < 40 and int(row[-1]) > 215  # a ramp, not a wall of 255


def test_32bit_integer_and_float_modes():
    # mode "I": how older Pillow versions open 16-bit grayscale PNGs; accepted within 0..65535
    img = _to_rgb8(Image.fromarray(np.array([[0, 257], [65535, 1000]], dtype=np.int32)), "x.png")
    assert np.asarray(img)[..., 0].tolist() == [[0, 1], [255, 4]]
    with pytest.raises(DatasetError, match=r"image y.png has 32-bit integer pixels in \[0, 70000\]"):
        _to_rgb8(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)), "y.png")
    with pytest.raises(DatasetError, match=r"image z.png has floating-point pixels \(PIL mode F\)"):
        _to_rgb8(Image.fromarray(np.zeros((2, 2), dtype=np.float32)), "z.png")


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("empty.png", b"", "cannot identify image file"),
        ("text.png", b"not an image at all", "cannot identify image file"),
        ("header_only.png", b"\x89PNG\r\n\x1a\n", ""),
    ],
)
def test_undecodable_files_name_the_file(tmp_path, name, content, match):
    folder, path = _one(tmp_path, name, lambda p: p.write_bytes(content))
    with pytest.raises(DatasetError, match=f"cannot decode image {path}: .*{match}"):
        folder[0]


def test_truncated_png_in_load_names_the_file(tmp_path):
    def write(p):
        write_png(p, V8[..., :3].repeat(8, 0).repeat(8, 1), 8, 2)
        p.write_bytes(p.read_bytes()[:-60])  # cut inside the image data

    folder, path = _one(tmp_path, "cut.png", write)
    with pytest.raises(DatasetError, match=f"cannot decode image {path}"):
        folder.load(8)


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    folder, path = _one(tmp_path, "bomb.png", lambda p: write_png(p, V8[..., 0], 8, 0))  # 35 px > 2 x 10
    with pytest.raises(DatasetError, match=f"image {path} is too large to decode safely"):
        folder[0]
