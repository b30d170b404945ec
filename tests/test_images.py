"""Image files are sized from their headers before anything is decoded: small files cannot become huge images."""

import struct
import time

import cv2
import numpy as np
import pytest

from pnr_tf.images import MAX_PIXELS
from pnr_tf.images import ImageFileError
from pnr_tf.images import ImageTooLargeError
from pnr_tf.images import decode_rgb
from pnr_tf.images import image_size
from pnr_tf.images import jpeg_is_complete
from pnr_tf.visualize import read_rgb
from tests.helpers import png_declaring


@pytest.mark.parametrize(
    "suffix, parameters",
    [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
     (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".bmp", [])],
)  # fmt: skip
def test_the_header_gives_the_size_opencv_decodes(suffix, parameters):
    for height, width in ((37, 53), (128, 64), (1, 300)):
        image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        data = cv2.imencode(suffix, image, parameters)[1].tobytes()
        assert image_size(data) == (height, width) == cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]


def test_a_jpeg_with_exif_is_sized_past_it_and_decoded_upright():
    image = np.zeros((40, 20, 3), np.uint8)
    image[:5] = 255  # a white band at the top
    data = cv2.imencode(".jpg", image)[1].tobytes()
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)  # Orientation 6: the stored picture is to be turned 90 degrees clockwise
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1) + entry + b"\x00" * 4
    rotated = data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:]
    assert image_size(rotated) == (40, 20)
    decoded = decode_rgb(rotated)
    assert decoded.shape == (20, 40, 3) and decoded[:, -5:].mean() > 200  # the band is now on the right


def test_a_decompression_bomb_is_refused_from_its_header_without_decoding():
    bomb = png_declaring(30000, 30000)
    assert len(bomb) < 1000 and image_size(bomb) == (30000, 30000)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"upload.png is 30000 x 30000 pixels; at most 67 megapixels"):
        decode_rgb(bomb, "upload.png")
    assert time.perf_counter() - start < 1.0
    side = int(np.sqrt(MAX_PIXELS)) + 1
    with pytest.raises(ImageTooLargeError):
        decode_rgb(png_declaring(side, side))
    with pytest.raises(ImageTooLargeError, match="at most 100 a side"):
        decode_rgb(png_declaring(101, 10), max_side=100)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "is empty"),
        (b"hello, not an image", "is not a JPEG, PNG, WebP or BMP image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 4, "is not a JPEG, PNG, WebP or BMP image"),
        (png_declaring(0, 10), "has no pixels"),
        (png_declaring(8, 8)[:60], "cannot be decoded"),
    ],
)
def test_files_that_are_no_usable_image_get_a_message(data, message):
    with pytest.raises(ImageFileError, match=message):
        decode_rgb(data, "photo.png")


def test_read_rgb_names_folders_empty_files_and_missing_files(tmp_path):
    with pytest.raises(ImageFileError, match="is a folder"):
        read_rgb(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageFileError, match="empty.jpg is empty"):
        read_rgb(tmp_path / "empty.jpg")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_rgb(tmp_path / "absent.jpg")
    (tmp_path / "bomb.png").write_bytes(png_declaring(30000, 30000))
    with pytest.raises(ImageTooLargeError):
        read_rgb(tmp_path / "bomb.png")


@pytest.mark.parametrize("parameters", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]])
def test_a_jpeg_cut_anywhere_before_its_end_is_incomplete_as_libjpeg_finds_it(parameters):
    """Against TensorFlow's libjpeg decoder, which fails a stream that ends early (OpenCV 4 decodes it with a warning)."""
    import tensorflow as tf

    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8), (5, 5), 2)
    data = cv2.imencode(".jpg", image, parameters)[1].tobytes()
    assert jpeg_is_complete(data) and jpeg_is_complete(data + b"\x00\x00ftypmp42" + bytes(64))  # a motion photo's video after it
    for cut in range(2, len(data), 7):
        try:
            tf.io.decode_jpeg(data[:cut])
            decodes = True
        except (tf.errors.InvalidArgumentError, ValueError):
            decodes = False
        assert not jpeg_is_complete(data[:cut]) and not decodes, cut
    with pytest.raises(ImageFileError, match="upload.jpg is a JPEG cut short"):
        decode_rgb(data[: len(data) // 2], "upload.jpg")
