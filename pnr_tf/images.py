"""Image files from users, decoded only after their header says they are small enough.

A compressed image can be tiny and decode to gigabytes (a 2.6 MB PNG of 30000 x 30000 pixels took
5.9 GB and 30 s to decode), so every image a user hands us (photos for ``generate``, the page's
uploads, dataset folders, another method's outputs) is sized from its header first, then decoded:

- ``image_size(data)``: (height, width) from the header of a JPEG, PNG, WebP or BMP, without decoding;
- ``decode_rgb(data, name)``: uint8 RGB, or ``ImageFileError`` naming the file and what is wrong with it
  (empty, not an image, larger than ``MAX_PIXELS``, damaged, a JPEG cut short). EXIF orientation is applied.

OpenCV 4 decodes a JPEG cut short (a copy interrupted, a download that stopped) with only a warning
and a grey lower part; OpenCV 5 refuses it. ``jpeg_is_complete`` walks the file's segments and scans
to its end-of-image marker, so the answer is the same on either.

OpenCV has a limit of its own (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 pixels unless set), which
``pnr_tf`` lowers to ``MAX_PIXELS`` when it is imported, as a second fence.
"""

import struct

import cv2
import numpy as np

from pnr_tf.conventions import MAX_PIXELS  # noqa: F401  (part of this module's API)

FORMATS = "JPEG, PNG, WebP or BMP"


class ImageFileError(ValueError):
    """An image that cannot or must not be decoded; the message names it and says why."""


class ImageTooLargeError(ImageFileError):
    """An image whose header declares more pixels than the limit."""


def image_size(data):
    """(height, width) read from the header of JPEG, PNG, WebP or BMP bytes; None when it is none of them."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(height), abs(width)  # a negative height stores the rows top-down
    return None


# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are other tables.
_JPEG_FRAME_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data):
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _JPEG_FRAME_MARKERS:
            if position + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return height, width
        if marker == 0xDA or length < 2:  # image data before any frame header: not a JPEG we can size
            return None
        position += 2 + length
    return None


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return height, width
    return None


def jpeg_is_complete(data):
    """Whether JPEG bytes hold every segment and scan up to the end-of-image marker (bytes after it, such as
    a phone's motion-photo video, are allowed)."""
    position, length = 2, len(data)
    while position + 2 <= length:
        if data[position] != 0xFF:  # stray bytes between segments (libjpeg skips them with a warning)
            position = data.find(b"\xff", position)
            if position < 0:
                return False
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:  # end of image
            return True
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        if position + 4 > length:
            return False
        (segment,) = struct.unpack(">H", data[position + 2 : position + 4])
        if segment < 2:
            return False
        position += 2 + segment
        if marker != 0xDA:
            continue
        # Entropy-coded data after a start of scan runs to the next marker that is neither a stuffed
        # 0xFF00 nor a restart marker.
        while True:
            position = data.find(b"\xff", position)
            if position < 0 or position + 1 >= length:
                return False
            following = data[position + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                position += 2
            elif following == 0xFF:
                position += 1
            else:
                break
    return False


def check_size(data, name, max_pixels=MAX_PIXELS, max_side=None):
    """(height, width) from the header, or ImageFileError when the data is no image we read or is too large."""
    if len(data) == 0:
        raise ImageFileError(f"{name} is empty (0 bytes)")
    size = image_size(data)
    if size is None:
        raise ImageFileError(f"{name} is not a {FORMATS} image (or its header is damaged)")
    height, width = size
    if height == 0 or width == 0:
        raise ImageFileError(f"{name} has no pixels ({width} x {height} in its header)")
    if max_side is not None and max(height, width) > max_side:
        raise ImageTooLargeError(f"{name} is {width} x {height} pixels; at most {max_side} a side")
    if height * width > max_pixels:
        raise ImageTooLargeError(f"{name} is {width} x {height} pixels; at most {max_pixels / 1e6:.0f} megapixels are decoded")
    return size


def decode_rgb(data, name="the image", max_pixels=MAX_PIXELS, max_side=None):
    """uint8 RGB (EXIF orientation applied) from file bytes, sized from the header before decoding."""
    check_size(data, name, max_pixels, max_side)
    if data.startswith(b"\xff\xd8") and not jpeg_is_complete(data):
        raise ImageFileError(f"{name} is a JPEG cut short (its data ends before the end-of-image marker): a truncated copy or download")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFileError(f"{name} cannot be decoded (a damaged or truncated image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
