"""`python -m pnr_tf.data.synthetic`: the built-in person dataset, written in Market-1501's formats.

    python -m pnr_tf.data.synthetic --out data/synthetic --num-identities 40 --images-per-identity 8 --seed 0

Each identity is a person-like figure with its own look (skin, hair, upper and lower clothing colours
and textures, sleeve length). Each image draws it in a new pose from a jointed skeleton with
limb-angle limits, facing the camera, away from it or sideways, over a varied background, 128 x 64,
together with the 18 OpenPose keypoints it was drawn from. Appearance is consistent within an
identity while the pose varies, so pose transfer is learnable and measurable.

Layout written (the same as the Market subset, so every tool reads it like Market-1501):
    images/*.jpg            names like 0001_c1s1_000003_00.jpg (identity = 4-digit prefix)
    annotations.csv         name:keypoints_y:keypoints_x
    pairs.csv, pairs-validation.csv, pairs-test.csv    from,to   (training / validation / test identities)
    tuples-test.csv         from_0,...,from_4,to   (held-out identities with >= 6 images)
"""

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from pnr_tf.data.annotations import MISSING
from pnr_tf.data.annotations import write_annotations
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.annotations import write_tuples
from pnr_tf.data.make_pairs import make_pairs
from pnr_tf.data.make_pairs import make_tuples

HEIGHT, WIDTH = 128, 64
SKIN_TONES = [(205, 224, 255), (160, 190, 235), (120, 160, 210), (80, 115, 170), (55, 80, 120)]  # BGR


def random_look(rng):
    """One identity's appearance: colours (BGR), textures and proportions."""
    return {
        "skin": np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) + rng.integers(-10, 11, 3),
        "hair": rng.integers(0, 120, 3) if rng.uniform() < 0.8 else rng.integers(100, 220, 3),
        "upper": rng.integers(0, 256, 3),
        "upper_second": rng.integers(0, 256, 3),
        "upper_texture": rng.choice(["plain", "stripes", "checks"]),
        "lower": rng.integers(0, 200, 3),
        "lower_texture": rng.choice(["plain", "plain", "stripes"]),
        "shoes": rng.integers(0, 90, 3),
        "long_sleeves": bool(rng.uniform() < 0.5),
        "width": rng.uniform(0.85, 1.15),
        "height": rng.uniform(0.92, 1.04),
        "hair_length": rng.uniform(0.3, 1.0),
    }


def random_pose(rng, look):
    """18 keypoints (y, x) of a plausible standing / walking pose, as floats; MISSING where hidden."""
    scale = look["height"] * rng.uniform(0.95, 1.03)
    center = WIDTH / 2 + rng.uniform(-4, 4)
    top = rng.uniform(4, 10)
    view = rng.choice(["front", "back", "left", "right"], p=[0.35, 0.25, 0.2, 0.2])
    half_shoulder = 11 * look["width"] * (1.0 if view in ("front", "back") else rng.uniform(0.25, 0.45))
    half_hip = 0.7 * half_shoulder
    neck = np.array([top + 18 * scale, center + rng.uniform(-1.5, 1.5)])
    hip_center = neck + [40 * scale, rng.uniform(-2, 2)]
    # Person's right is on the image left when facing the camera.
    side = -1.0 if view in ("front", "left") else 1.0
    points = np.full((18, 2), np.nan)
    points[1] = neck
    points[2] = neck + [1.5, side * half_shoulder]
    points[5] = neck + [1.5, -side * half_shoulder]
    points[8] = hip_center + [0, side * half_hip]
    points[11] = hip_center + [0, -side * half_hip]
    stride = rng.uniform(-1, 1)
    for shoulder, elbow, wrist, direction in ((2, 3, 4, side), (5, 6, 7, -side)):
        upper_angle = np.deg2rad(rng.uniform(3, 40)) * direction + 0.3 * stride * direction
        bend = np.deg2rad(rng.uniform(0, 70)) * rng.choice([-1, 1])
        points[elbow] = points[shoulder] + 17 * scale * np.array([np.cos(upper_angle), np.sin(upper_angle)])
        points[wrist] = points[elbow] + 15 * scale * np.array([np.cos(upper_angle + bend), np.sin(upper_angle + bend)])
    for index, (hip, knee, ankle) in enumerate(((8, 9, 10), (11, 12, 13))):
        swing = np.deg2rad(rng.uniform(-4, 12)) * (1 if index == 0 else -1) * np.sign(stride + 1e-9) * abs(stride)
        outward = np.deg2rad(rng.uniform(0, 8)) * (side if hip == 8 else -side)
        angle = swing + outward
        knee_bend = np.deg2rad(rng.uniform(0, 25))
        points[knee] = points[hip] + 27 * scale * np.array([np.cos(angle), np.sin(angle)])
        points[ankle] = points[knee] + 27 * scale * np.array([np.cos(angle - knee_bend * np.sign(angle + 1e-9)), np.sin(angle)])
    head = neck - [13 * scale, 0]
    facing = {"front": 0.0, "back": 0.0, "left": -4.0, "right": 4.0}[view]
    points[16] = head + [0, side * 5]  # right ear
    points[17] = head + [0, -side * 5]  # left ear
    if view != "back":
        points[0] = head + [2, facing]
        points[14] = head + [-1, facing + side * 2.5]
        points[15] = head + [-1, facing - side * 2.5]
        if view in ("left", "right"):  # the far ear is hidden in profile
            points[17 if (view == "left") == (side < 0) else 16] = np.nan
    return points, view


_ROWS, _COLUMNS = np.mgrid[0:HEIGHT, 0:WIDTH]
TEXTURE_PATTERNS = {
    "plain": np.zeros((HEIGHT, WIDTH), bool),
    "stripes": (_ROWS // 4) % 2 == 0,
    "checks": ((_ROWS // 5) + (_COLUMNS // 5)) % 2 == 0,
}


def background(rng):
    """A varied background: a vertical gradient between two colours plus a few blocks (street, walls)."""
    top, bottom = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    weights = np.linspace(0, 1, HEIGHT)[:, None, None]
    image = (1 - weights) * top + weights * bottom
    image = np.repeat(image, WIDTH, axis=1)
    for _ in range(rng.integers(0, 4)):
        y0, x0 = rng.integers(0, HEIGHT), rng.integers(0, WIDTH)
        y1, x1 = y0 + rng.integers(5, 50), x0 + rng.integers(5, 30)
        image[y0:y1, x0:x1] = rng.integers(30, 240, 3)
    return image.astype(np.float32)


def draw_person(look, points, view, rng):
    """Renders one image (uint8 BGR) of the figure in the given pose."""
    image = background(rng)

    def stamp(mask, color, second=None, texture="plain"):
        """Paints `mask` in `color`, with the texture's pattern in `second`."""
        image[mask] = color
        image[mask & TEXTURE_PATTERNS[texture]] = look["upper_second"] if second is None else second

    def limb_mask(start, end, thickness):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.line(mask, tuple(np.round(start[::-1]).astype(int)), tuple(np.round(end[::-1]).astype(int)), 1, thickness)
        return mask.astype(bool)

    # Legs, then shoes.
    for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):
        mask = limb_mask(points[hip], points[knee], 8) | limb_mask(points[knee], points[ankle], 7)
        stamp(mask, look["lower"], look["lower"] * 0.6, look["lower_texture"])
        shoe = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.ellipse(shoe, tuple(np.round(points[ankle][::-1] + [0, 2]).astype(int)), (4, 2), 0, 0, 360, 1, -1)
        stamp(shoe.astype(bool), look["shoes"])
    # Torso.
    torso = np.zeros((HEIGHT, WIDTH), np.uint8)
    corners = np.array([points[2], points[5], points[11], points[8]])[:, ::-1]
    cv2.fillConvexPoly(torso, np.round(corners).astype(np.int32), 1)
    torso = cv2.dilate(torso, np.ones((5, 5), np.uint8)).astype(bool)
    stamp(torso, look["upper"], texture=look["upper_texture"])
    # Arms: sleeves in the upper colour, skin below the elbow for short sleeves.
    for shoulder, elbow, wrist in ((2, 3, 4), (5, 6, 7)):
        stamp(limb_mask(points[shoulder], points[elbow], 6), look["upper"], texture=look["upper_texture"])
        forearm = limb_mask(points[elbow], points[wrist], 5)
        stamp(forearm, look["upper"] if look["long_sleeves"] else look["skin"], texture=look["upper_texture"] if look["long_sleeves"] else "plain")
        hand = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.circle(hand, tuple(np.round(points[wrist][::-1]).astype(int)), 2, 1, -1)
        stamp(hand.astype(bool), look["skin"])
    # Head: neck, face, hair (covering the face from behind).
    head_center = (points[16] + points[17]) / 2 if not np.isnan(points[17]).any() and not np.isnan(points[16]).any() else points[1] - [13, 0]
    stamp(limb_mask(points[1], head_center, 4), look["skin"])
    face = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(face, tuple(np.round(head_center[::-1]).astype(int)), (6, 7), 0, 0, 360, 1, -1)
    stamp(face.astype(bool), look["skin"])
    hair = np.zeros((HEIGHT, WIDTH), np.uint8)
    hair_center = tuple(np.round(head_center[::-1] - [0, 2]).astype(int))
    start_angle = 180 if view != "back" else 150
    end_angle = 360 if view != "back" else 390
    cv2.ellipse(hair, hair_center, (7, int(6 + 6 * look["hair_length"] * (view == "back"))), 0, start_angle, end_angle, 1, -1)
    stamp(hair.astype(bool), look["hair"])
    if view != "back":
        for eye in (14, 15):
            if not np.isnan(points[eye]).any():
                cv2.circle(image, tuple(np.round(points[eye][::-1]).astype(int)), 1, (30, 30, 30), -1)
    # Camera noise and blur, as in real low-resolution crops.
    image = cv2.GaussianBlur(image, (3, 3), 0.6) + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def to_annotation(points):
    """Float points with NaN -> int keypoints, MISSING for hidden or out-of-image joints."""
    keypoints = np.full((18, 2), MISSING, np.int32)
    for index, (row, column) in enumerate(points):
        if np.isnan(row) or np.isnan(column):
            continue
        row, column = int(round(row)), int(round(column))
        if 0 <= row < HEIGHT and 0 <= column < WIDTH:
            keypoints[index] = (row, column)
    return keypoints


def write_synthetic_dataset(
    out, num_identities=40, images_per_identity=8, seed=0, test_fraction=0.2, validation_fraction=0.1, num_tuples=200
):
    """Writes the dataset under `out` and returns the annotations (name -> keypoints)."""
    out = Path(out)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    annotations = {}
    for identity in range(1, num_identities + 1):
        rng = np.random.default_rng([seed, identity])
        look = random_look(rng)
        for frame in range(images_per_identity):
            points, view = random_pose(rng, look)
            image = draw_person(look, points, view, rng)
            name = f"{identity:04d}_c{frame % 6 + 1}s1_{frame:06d}_00.jpg"
            cv2.imwrite(str(image_dir / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            annotations[name] = to_annotation(points)
    write_annotations(out / "annotations.csv", annotations)
    # The last identities are the test set, the ones before them validation: people training never sees.
    num_test = max(1, int(round(test_fraction * num_identities))) if num_identities > 1 else 0
    num_validation = max(1, int(round(validation_fraction * num_identities))) if num_identities > 2 else 0
    first_test = num_identities - num_test + 1
    test_identities = {f"{identity:04d}" for identity in range(first_test, num_identities + 1)}
    validation_identities = {f"{identity:04d}" for identity in range(first_test - num_validation, first_test)}
    held_out = test_identities | validation_identities
    train = {name: points for name, points in annotations.items() if name[:4] not in held_out}
    validation = {name: points for name, points in annotations.items() if name[:4] in validation_identities}
    test = {name: points for name, points in annotations.items() if name[:4] in test_identities}
    write_pairs(out / "pairs.csv", make_pairs(train))
    write_pairs(out / "pairs-validation.csv", make_pairs(validation))
    write_pairs(out / "pairs-test.csv", make_pairs(test))
    if images_per_identity >= 6 and test:
        write_tuples(out / "tuples-test.csv", make_tuples(test, 5, num_tuples, seed))
    return annotations


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-identities", type=int, default=40)
    parser.add_argument("--images-per-identity", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    start = time.perf_counter()
    annotations = write_synthetic_dataset(arguments.out, arguments.num_identities, arguments.images_per_identity, arguments.seed)
    print(f"wrote {len(annotations)} images of {arguments.num_identities} identities to {arguments.out} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
