"""The field's file formats (PATN / Def-GAN): keypoint annotations, pair files and multi-shot tuple files.

- annotations: header ``name:keypoints_y:keypoints_x``, rows ``name: [18 ints]: [18 ints]``, -1 = missing.
- pairs: header ``from,to``, rows ``from_name,to_name``.
- tuples: header ``from_0,...,from_{M-1},to``, rows of M + 1 names.

Keypoints are returned as int arrays of shape (18, 2) holding (y, x). Every parse error names the
file and the 1-based line.
"""

import csv
import io
import json

import numpy as np
import tensorflow as tf

from pnr_tf import files
from pnr_tf.conventions import NUM_JOINTS

ANNOTATION_HEADER = "name:keypoints_y:keypoints_x"


class DataFormatError(ValueError):
    """A malformed row in one of the field's files; the message names the file and line."""


# A coordinate beyond this is no pixel of any image this project reads (and would overflow int32).
LARGEST_COORDINATE = 1_000_000


def parse_json(text):
    """json.loads for untrusted text: every way it can fail is a ValueError (bad syntax, an integer of
    more than 4300 digits, which Python refuses, and nesting deeper than the interpreter can follow)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class Annotations(dict):
    """name -> (18, 2) int32 keypoints (y, x); ``skipped`` lists the lines left out (on_bad_sample="skip")."""

    def __init__(self, *arguments, **keywords):
        super().__init__(*arguments, **keywords)
        self.skipped = []


def read_annotations(path, on_bad_sample="error"):
    """name -> (18, 2) int keypoints (y, x) from an annotation file, as ``Annotations``.

    A malformed line raises DataFormatError naming file and line, or with ``on_bad_sample="skip"``
    is left out and listed in ``.skipped``. Values must be integers (``true`` is not 1) between
    -1 and LARGEST_COORDINATE; a UTF-8 byte-order mark before the header is ignored.
    """
    keypoints = Annotations()
    try:
        text = files.read_text(path)
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"annotation file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or (line_number == 1 and line.replace(" ", "") == ANNOTATION_HEADER):
            continue
        try:
            name, points = _parse_annotation_line(path, line_number, line)
            if name in keypoints:
                raise DataFormatError(f"{path}:{line_number}: duplicate name {name!r}")
        except DataFormatError as error:
            if on_bad_sample != "skip":
                raise
            keypoints.skipped.append(str(error))
            continue
        keypoints[name] = points
    return keypoints


def _parse_annotation_line(path, line_number, line):
    parts = line.split(":")
    if len(parts) != 3:
        raise DataFormatError(f"{path}:{line_number}: expected 'name:[y...]:[x...]', got {line[:80]!r}")
    name = parts[0].strip()
    try:
        rows = parse_json(parts[1])
        columns = parse_json(parts[2])
    except ValueError as error:
        raise DataFormatError(f"{path}:{line_number}: keypoint lists are not JSON ({error})") from None
    if not (_is_int_list(rows) and _is_int_list(columns)):
        raise DataFormatError(f"{path}:{line_number}: expected two lists of {NUM_JOINTS} integers for {name!r}")
    values = rows + columns
    if any(value < -1 or value > LARGEST_COORDINATE for value in values):
        bad = next(value for value in values if value < -1 or value > LARGEST_COORDINATE)
        raise DataFormatError(f"{path}:{line_number}: keypoint value {bad} for {name!r} is neither -1 (missing) nor a pixel position")
    return name, np.stack([rows, columns], axis=1).astype(np.int32)


def _is_int_list(values):
    # type(...) is int: JSON true is a bool, which Python counts as the integer 1.
    return isinstance(values, list) and len(values) == NUM_JOINTS and all(type(value) is int for value in values)


def write_annotations(path, keypoints):
    """Writes name -> (18, 2) keypoints in the annotation format."""
    lines = [ANNOTATION_HEADER]
    for name, points in keypoints.items():
        points = np.asarray(points, dtype=int)
        lines.append(f"{name}: {json.dumps(points[:, 0].tolist())}: {json.dumps(points[:, 1].tolist())}")
    files.write_text(path, "\n".join(lines) + "\n")


def read_name_rows(path, num_columns=None):
    """Rows of image names from a pair or tuple CSV (header skipped), each a tuple of names.

    num_columns: the expected row width (2 for pairs); None takes the header's width.
    """
    try:
        rows = list(csv.reader(io.StringIO(files.read_text(path), newline="")))
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"pair file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    if not rows:
        raise DataFormatError(f"{path}: empty file, expected a header such as 'from,to'")
    header = [cell.strip() for cell in rows[0]]
    if not header or header[-1] != "to" or not all(cell.startswith("from") for cell in header[:-1]):
        raise DataFormatError(f"{path}:1: expected a header 'from,to' or 'from_0,...,to', got {','.join(header)!r}")
    width = num_columns or len(header)
    if width < 2 or len(header) != width:
        raise DataFormatError(f"{path}:1: expected {width} columns, the header has {len(header)}")
    result = []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        names = tuple(cell.strip() for cell in row)
        if len(names) != width or not all(names):
            raise DataFormatError(f"{path}:{line_number}: expected {width} non-empty names, got {','.join(row)!r}")
        result.append(names)
    return result


def read_pairs(path):
    """[(from_name, to_name), ...] from a pair file."""
    return read_name_rows(path, num_columns=2)


def read_tuples(path):
    """[((source_0, ..., source_{M-1}), target), ...] from a multi-shot tuple file."""
    return [(row[:-1], row[-1]) for row in read_name_rows(path)]


def write_name_rows(path, rows, header):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    files.write_text(path, text.getvalue())


def write_pairs(path, pairs):
    write_name_rows(path, pairs, ["from", "to"])


def write_tuples(path, tuples):
    """tuples: [((source names...), target name), ...]."""
    num_sources = len(tuples[0][0]) if tuples else 1
    header = [f"from_{index}" for index in range(num_sources)] + ["to"]
    write_name_rows(path, [(*sources, target) for sources, target in tuples], header)


def read_keypoints_json(path):
    """(18, 2) float32 (y, x) keypoints from a JSON file holding 18 [y, x] pairs, -1 for a missing joint."""
    try:
        values = parse_json(files.read_text(path))
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"keypoint file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    except ValueError as error:
        raise DataFormatError(f"{path}: not JSON ({error})") from None
    if isinstance(values, dict) and "keypoints" in values:
        values = values["keypoints"]
    try:
        with np.errstate(over="ignore"):  # a coordinate beyond float32 becomes inf: outside the image, a missing joint
            keypoints = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        keypoints = None
    if keypoints is None or keypoints.shape != (NUM_JOINTS, 2):
        raise DataFormatError(f"{path}: expected {NUM_JOINTS} [y, x] pairs (-1 for a missing joint)")
    return keypoints
