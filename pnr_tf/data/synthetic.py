"""`python -m pnr_tf.data.synthetic`: the built-in person dataset, in Market-1501's or DeepFashion's formats.

    python -m pnr_tf.data.synthetic --out data/synthetic --num-identities 40 --images-per-identity 8 --seed 0
    python -m pnr_tf.data.synthetic --out data/synthetic_fashion --dataset deepfashion    # 256 x 176, item names

Each identity is a person-like figure with its own look (skin, hair, upper and lower clothing colours
and textures, sleeve length). Each image draws it in a new pose from a jointed skeleton with
limb-angle limits, facing the camera, away from it or sideways, over a varied background, at the
dataset's image size (Market 128 x 64; DeepFashion 256 x 176, the same figure twice as tall, centred),
together with the 18 OpenPose keypoints it was drawn from. Appearance is consistent within an
identity while the pose varies, so pose transfer is learnable and measurable.

Layout written (the same as the Market subset, so every tool reads it like Market-1501):
    images/*.jpg            names like 0001_c1s1_000003_00.jpg (identity = 4-digit prefix), or for DeepFashion
                            fashionWOMENSyntheticid00000001_3front.jpg (item = the name up to its last '_')
    annotations.csv         name:keypoints_y:keypoints_x
    pairs.csv, pairs-validation.csv, pairs-test.csv    from,to   (training / validation / test identities)
    tuples-test.csv         from_0,...,from_4,to   (held-out identities with >= 6 images)
"""

import argparse
import functools
import time
from pathlib import Path

import cv2
import numpy as np

from pnr_tf.conventions import MISSING
from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.data.annotations import write_annotations
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.annotations import write_tuples
from pnr_tf.data.datasets import DATASETS
from pnr_tf.data.datasets import MARKET
from pnr_tf.data.datasets import convention
from pnr_tf.data.pairs import make_pairs
from pnr_tf.data.pairs import make_tuples

HEIGHT, WIDTH = MARKET.image_size  # the size every length below is drawn for; other sizes scale by height / HEIGHT
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


def random_pose(rng, look, size=(HEIGHT, WIDTH)):
    """18 keypoints (y, x) of a plausible standing / walking pose, as floats; NaN where hidden.

    Drawn for HEIGHT x WIDTH, then scaled by size's height / HEIGHT and centred in size's width.
    """
    points, view = _random_pose(rng, look)
    factor = size[0] / HEIGHT
    return points * factor + [0.0, (size[1] - WIDTH * factor) / 2], view


def _random_pose(rng, look):
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
    points = np.full((NUM_JOINTS, 2), np.nan)
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


@functools.lru_cache(maxsize=4)
def texture_patterns(size):
    """Stripe and check masks of a size; their period scales with the image like the figure."""
    rows, columns = np.mgrid[0 : size[0], 0 : size[1]]
    factor = size[0] / HEIGHT
    return {
        "plain": np.zeros(size, bool),
        "stripes": (rows // max(1, round(4 * factor))) % 2 == 0,
        "checks": ((rows // max(1, round(5 * factor))) + (columns // max(1, round(5 * factor)))) % 2 == 0,
    }


def background(rng, size=(HEIGHT, WIDTH)):
    """A varied background: a vertical gradient between two colours plus a few blocks (street, walls)."""
    height, width = size
    factor = height / HEIGHT
    top, bottom = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    weights = np.linspace(0, 1, height)[:, None, None]
    image = (1 - weights) * top + weights * bottom
    image = np.repeat(image, width, axis=1)
    for _ in range(rng.integers(0, 4)):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = y0 + int(rng.integers(5, 50) * factor), x0 + int(rng.integers(5, 30) * factor)
        image[y0:y1, x0:x1] = rng.integers(30, 240, 3)
    return image.astype(np.float32)


def draw_person(look, points, view, rng, size=(HEIGHT, WIDTH)):
    """Renders one image (uint8 BGR) of size (height, width) of the figure in the given pose."""
    height, width = size
    factor = height / HEIGHT
    patterns = texture_patterns(tuple(size))
    thick = lambda value: max(1, int(round(value * factor)))  # noqa: E731
    image = background(rng, size)

    def stamp(mask, color, second=None, texture="plain"):
        """Paints `mask` in `color`, with the texture's pattern in `second`."""
        image[mask] = color
        image[mask & patterns[texture]] = look["upper_second"] if second is None else second

    def limb_mask(start, end, thickness):
        mask = np.zeros((height, width), np.uint8)
        cv2.line(mask, tuple(np.round(start[::-1]).astype(int)), tuple(np.round(end[::-1]).astype(int)), 1, thickness)
        return mask.astype(bool)

    # Legs, then shoes.
    for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):
        mask = limb_mask(points[hip], points[knee], thick(8)) | limb_mask(points[knee], points[ankle], thick(7))
        stamp(mask, look["lower"], look["lower"] * 0.6, look["lower_texture"])
        shoe = np.zeros((height, width), np.uint8)
        cv2.ellipse(shoe, tuple(np.round(points[ankle][::-1] + [0, 2 * factor]).astype(int)), (thick(4), thick(2)), 0, 0, 360, 1, -1)
        stamp(shoe.astype(bool), look["shoes"])
    # Torso.
    torso = np.zeros((height, width), np.uint8)
    corners = np.array([points[2], points[5], points[11], points[8]])[:, ::-1]
    cv2.fillConvexPoly(torso, np.round(corners).astype(np.int32), 1)
    torso = cv2.dilate(torso, np.ones((thick(5), thick(5)), np.uint8)).astype(bool)
    stamp(torso, look["upper"], texture=look["upper_texture"])
    # Arms: sleeves in the upper colour, skin below the elbow for short sleeves.
    for shoulder, elbow, wrist in ((2, 3, 4), (5, 6, 7)):
        stamp(limb_mask(points[shoulder], points[elbow], thick(6)), look["upper"], texture=look["upper_texture"])
        forearm = limb_mask(points[elbow], points[wrist], thick(5))
        stamp(forearm, look["upper"] if look["long_sleeves"] else look["skin"], texture=look["upper_texture"] if look["long_sleeves"] else "plain")
        hand = np.zeros((height, width), np.uint8)
        cv2.circle(hand, tuple(np.round(points[wrist][::-1]).astype(int)), thick(2), 1, -1)
        stamp(hand.astype(bool), look["skin"])
    # Head: neck, face, hair (covering the face from behind).
    head_center = (points[16] + points[17]) / 2 if not np.isnan(points[17]).any() and not np.isnan(points[16]).any() else points[1] - [13 * factor, 0]
    stamp(limb_mask(points[1], head_center, thick(4)), look["skin"])
    face = np.zeros((height, width), np.uint8)
    cv2.ellipse(face, tuple(np.round(head_center[::-1]).astype(int)), (thick(6), thick(7)), 0, 0, 360, 1, -1)
    stamp(face.astype(bool), look["skin"])
    hair = np.zeros((height, width), np.uint8)
    hair_center = tuple(np.round(head_center[::-1] - [0, 2 * factor]).astype(int))
    start_angle = 180 if view != "back" else 150
    end_angle = 360 if view != "back" else 390
    cv2.ellipse(hair, hair_center, (thick(7), int((6 + 6 * look["hair_length"] * (view == "back")) * factor)), 0, start_angle, end_angle, 1, -1)
    stamp(hair.astype(bool), look["hair"])
    if view != "back":
        for eye in (14, 15):
            if not np.isnan(points[eye]).any():
                cv2.circle(image, tuple(np.round(points[eye][::-1]).astype(int)), thick(1), (30, 30, 30), -1)
    # Camera noise and blur, as in real low-resolution crops.
    image = cv2.GaussianBlur(image, (3, 3), 0.6) + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def to_annotation(points, size=(HEIGHT, WIDTH)):
    """Float points with NaN -> int keypoints, MISSING for hidden or out-of-image joints."""
    keypoints = np.full((NUM_JOINTS, 2), MISSING, np.int32)
    for index, (row, column) in enumerate(points):
        if np.isnan(row) or np.isnan(column):
            continue
        row, column = int(round(row)), int(round(column))
        if 0 <= row < size[0] and 0 <= column < size[1]:
            keypoints[index] = (row, column)
    return keypoints


def image_name(dataset, identity, frame):
    """A name in the dataset's convention, so its identity rule finds the person."""
    if dataset.name == "deepfashion":
        return f"fashionWOMENSyntheticid{identity:08d}_{frame + 1}{('front', 'side', 'back', 'full')[frame % 4]}.jpg"
    return f"{identity:04d}_c{frame % 6 + 1}s1_{frame:06d}_00.jpg"


def write_synthetic_dataset(
    out, num_identities=40, images_per_identity=8, seed=0, test_fraction=0.2, validation_fraction=0.1, num_tuples=200,
    dataset="market",
):  # fmt: skip
    """Writes the dataset under `out` and returns the annotations (name -> keypoints).

    dataset: "market" (128 x 64, Market names) or "deepfashion" (256 x 176, item names).
    """
    dataset = convention(dataset)
    size = dataset.image_size
    out = Path(out)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    annotations, identity_of_name = {}, {}
    for identity in range(1, num_identities + 1):
        rng = np.random.default_rng([seed, identity])
        look = random_look(rng)
        for frame in range(images_per_identity):
            points, view = random_pose(rng, look, size)
            image = draw_person(look, points, view, rng, size)
            name = image_name(dataset, identity, frame)
            cv2.imwrite(str(image_dir / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            annotations[name] = to_annotation(points, size)
            identity_of_name[name] = identity
    write_annotations(out / "annotations.csv", annotations)
    # The last identities are the test set, the ones before them validation: people training never sees.
    num_test = max(1, int(round(test_fraction * num_identities))) if num_identities > 1 else 0
    num_validation = max(1, int(round(validation_fraction * num_identities))) if num_identities > 2 else 0
    first_test = num_identities - num_test + 1
    split_of = lambda name: "test" if identity_of_name[name] >= first_test else "validation" if identity_of_name[name] >= first_test - num_validation else "train"  # noqa: E731
    parts = {split: {name: points for name, points in annotations.items() if split_of(name) == split} for split in ("train", "validation", "test")}
    write_pairs(out / "pairs.csv", make_pairs(parts["train"], dataset=dataset))
    write_pairs(out / "pairs-validation.csv", make_pairs(parts["validation"], dataset=dataset))
    write_pairs(out / "pairs-test.csv", make_pairs(parts["test"], dataset=dataset))
    if images_per_identity >= 6 and parts["test"]:
        write_tuples(out / "tuples-test.csv", make_tuples(parts["test"], 5, num_tuples, seed, dataset=dataset))
    return annotations


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-identities", type=int, default=40)
    parser.add_argument("--images-per-identity", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="market", help="image size and naming convention")
    arguments = parser.parse_args(argv)
    start = time.perf_counter()
    annotations = write_synthetic_dataset(arguments.out, arguments.num_identities, arguments.images_per_identity, arguments.seed,
                                          dataset=arguments.dataset)  # fmt: skip
    print(f"wrote {len(annotations)} images of {arguments.num_identities} identities to {arguments.out} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
