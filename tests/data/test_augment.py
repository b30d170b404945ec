"""Training-time augmentation against float64 NumPy references; the pipeline's masks, determinism and resumes."""

import numpy as np
import pytest
import tensorflow as tf

from pnr_tf.conventions import MIRRORED_JOINTS
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.augment import Augmentation
from pnr_tf.data.augment import augment
from pnr_tf.data.augment import mirror
from pnr_tf.data.augment import recolour
from pnr_tf.data.augment import zoom
from pnr_tf.data.keypoints import pose_mask
from pnr_tf.data.pairs import with_more_sources
from pnr_tf.data.pipeline import InputOptions
from pnr_tf.data.pipeline import make_dataset
from pnr_tf.data.pipeline import pair_samples
from pnr_tf.losses import l1_loss
from pnr_tf.losses import weighted_l1_loss


def keypoints_of(rng, count=2, height=16, width=8):
    points = rng.uniform(0, 1, (count, 18, 2)) * [height - 1, width - 1]
    points[:, 3] = -1.0  # a missing joint stays missing
    return points.astype(np.float32)


def test_mirror_flips_the_image_mirrors_x_and_swaps_left_and_right_joints():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 16, 8, 3)).astype(np.float32)
    keypoints = keypoints_of(rng)
    mirrored_images, mirrored = mirror(tf.constant(images), tf.constant(keypoints))
    np.testing.assert_array_equal(mirrored_images.numpy(), images[:, :, ::-1])
    expected = keypoints.astype(np.float64).copy()
    present = (expected >= 0).all(axis=-1)
    expected[present, 1] = 7 - expected[present, 1]
    expected = expected[:, list(MIRRORED_JOINTS)]
    np.testing.assert_allclose(mirrored.numpy(), expected, atol=1e-6)
    assert mirrored.numpy()[0, MIRRORED_JOINTS.index(3)].tolist() == [-1.0, -1.0]  # the missing right elbow is a missing left elbow
    assert sorted(MIRRORED_JOINTS) == list(range(18)) and all(MIRRORED_JOINTS[MIRRORED_JOINTS[j]] == j for j in range(18))
    twice = mirror(*mirror(tf.constant(images), tf.constant(keypoints)))
    np.testing.assert_allclose(twice[1].numpy(), keypoints, atol=1e-6)


def test_zoom_moves_keypoints_as_the_image_and_drops_those_that_leave_it():
    rng = np.random.default_rng(1)
    height, width = 32, 24
    keypoints = keypoints_of(rng, 1, height, width)
    scale, shift = 1.25, np.array([2.0, -3.0])
    # One bright pixel at each of three joints: after the zoom, the brightest pixel is where the joint went.
    for joint in (0, 8, 13):
        image = np.zeros((1, height, width, 1), np.float32)
        y, x = np.round(keypoints[0, joint]).astype(int)
        image[0, y, x] = 1.0
        points = np.full((1, 18, 2), -1.0, np.float32)
        points[0, joint] = (y, x)
        zoomed, moved = zoom(tf.constant(image), tf.constant(points), tf.constant(scale, tf.float32), tf.constant(shift, tf.float32))
        centre = (np.array([height, width]) - 1) / 2
        expected = scale * (np.array([y, x]) - centre) + centre + shift
        inside = (expected >= 0).all() and (expected < np.array([height, width])).all()  # the one visibility rule
        np.testing.assert_allclose(moved.numpy()[0, joint], expected if inside else [-1, -1], atol=1e-4)
        if inside:
            brightest = np.unravel_index(np.argmax(zoomed.numpy()[0, ..., 0]), (height, width))
            assert np.abs(np.array(brightest) - expected).max() <= 1.0, (brightest, expected)
    zoomed, moved = zoom(tf.constant(np.zeros((1, height, width, 3), np.float32)), tf.constant(keypoints), tf.constant(2.0), tf.constant([0.0, 0.0]))
    centre = (np.array([height, width]) - 1) / 2
    doubled = 2 * (keypoints[0] - centre) + centre
    far = (doubled < 0) | (doubled >= np.array([height, width]))
    assert (moved.numpy()[0][far.any(axis=-1)] == -1).all() and (moved.numpy()[0, 3] == -1).all()


def test_an_integer_shift_at_scale_one_moves_pixels_exactly_and_repeats_the_border():
    image = np.arange(6 * 5, dtype=np.float32).reshape(1, 6, 5, 1)
    zoomed, _ = zoom(tf.constant(image), tf.zeros((1, 18, 2)) - 1, tf.constant(1.0), tf.constant([1.0, 2.0]))
    expected = np.pad(image[0, :-1, :-2, 0], ((1, 0), (2, 0)), mode="edge")
    np.testing.assert_allclose(zoomed.numpy()[0, ..., 0], expected, atol=1e-5)


def test_one_colour_change_for_every_image_of_an_example():
    rng = np.random.default_rng(2)
    image = rng.uniform(-1, 1, (1, 8, 4, 3)).astype(np.float32)
    changed = recolour(tf.constant(np.concatenate([image, image])), 0.05, 1.1, 0.9, 0.01).numpy()
    np.testing.assert_array_equal(changed[0], changed[1])
    brighter = recolour(tf.constant(image), 0.1, 1.0, 1.0, 0.0).numpy()
    np.testing.assert_allclose(brighter, np.clip((image + 1) / 2 + 0.1, 0, 1) * 2 - 1, atol=1e-5)


def test_augment_draws_once_per_seed_and_changes_nothing_when_off():
    rng = np.random.default_rng(3)
    images = tf.constant(rng.uniform(-1, 1, (3, 16, 8, 3)).astype(np.float32))
    keypoints = tf.constant(keypoints_of(rng, 3))
    on = Augmentation(mirror=True, scale=0.1, colour=0.1)
    first = augment(images, keypoints, on, tf.constant([0, 7], tf.int64))
    again = augment(images, keypoints, on, tf.constant([0, 7], tf.int64))
    other = augment(images, keypoints, on, tf.constant([0, 8], tf.int64))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    assert not np.array_equal(first[0].numpy(), other[0].numpy())
    off = augment(images, keypoints, Augmentation(), tf.constant([0, 7], tf.int64))
    np.testing.assert_array_equal(off[0].numpy(), images.numpy())


def test_the_pipeline_augments_reproducibly_resumes_in_order_and_draws_the_targets_masks(synthetic_root):
    samples = pair_samples(synthetic_root / "pairs.csv", synthetic_root / "annotations.csv", synthetic_root / "images")
    augmentation = Augmentation(mirror=True, scale=0.1, colour=0.1)
    examples = lambda skip: make_dataset(samples, 1, options=InputOptions(seed=4, augmentation=augmentation, skip_examples=skip)).take(4)  # noqa: E731
    full = [example["target_image"].numpy() for example in examples(0)]
    resumed = [example["target_image"].numpy() for example in examples(2)]
    np.testing.assert_array_equal(np.stack(full[2:]), np.stack(resumed[:2]))  # a resumed run sees the same examples
    plain = next(iter(make_dataset(samples, 4, options=InputOptions(seed=4, shuffle=False, target_masks=True))))
    annotations = read_annotations(synthetic_root / "annotations.csv")
    for mask, path in zip(plain["target_mask"].numpy(), samples.target_paths[:4]):
        np.testing.assert_array_equal(mask[..., 0], pose_mask(annotations[path.rsplit("/", 1)[1]], 128, 64).astype(np.float32))


def test_weighted_l1_is_plain_l1_times_one_plus_the_weight_inside_the_mask():
    rng = np.random.default_rng(6)
    generated, target = rng.uniform(-1, 1, (2, 2, 8, 4, 3))
    mask = (rng.uniform(size=(2, 8, 4, 1)) > 0.5).astype(np.float64)
    expected = (np.abs(generated - target) * (1 + 2.0 * mask)).reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(weighted_l1_loss(generated, target, 1 + 2.0 * mask).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(weighted_l1_loss(generated, target, np.ones_like(mask)).numpy(), l1_loss(generated, target).numpy(), rtol=1e-6)


def test_more_sources_are_other_photos_of_the_person_never_the_target():
    pairs = [("0001_a.jpg", "0001_b.jpg"), ("0001_b.jpg", "0001_c.jpg"), ("0002_a.jpg", "0002_b.jpg")]
    rows = with_more_sources(pairs, 2, seed=0)
    assert rows[0] == (("0001_a.jpg", "0001_c.jpg"), "0001_b.jpg")
    assert rows[1] == (("0001_b.jpg", "0001_a.jpg"), "0001_c.jpg")
    assert rows[2] == (("0002_a.jpg", "0002_a.jpg"), "0002_b.jpg")  # nobody else: the source again
    assert all(target not in sources for sources, target in with_more_sources(pairs, 4, seed=1))


@pytest.mark.parametrize("p", [1, 2])
def test_a_repeated_source_leaves_the_regression_as_it_was(p):
    from pnr_tf.layers.regression import PNormRegression

    rng = np.random.default_rng(7)
    appearance, pose = rng.normal(size=(1, 40, 6)).astype(np.float32), rng.normal(size=(1, 40, 4)).astype(np.float32)
    layer = PNormRegression(p=p, solver="cholesky")
    once = layer.estimate(appearance, pose).numpy()
    twice = layer.estimate(np.concatenate([appearance] * 2, axis=1), np.concatenate([pose] * 2, axis=1)).numpy()
    np.testing.assert_allclose(twice, once, rtol=1e-4, atol=1e-5)


def test_a_mirror_pair_draws_its_target_as_the_source_mirrored_with_its_mask(synthetic_root):
    from pnr_tf.data.pipeline import mirror_pair_samples

    names = sorted(read_annotations(synthetic_root / "annotations.csv"))[:3]
    plain = pair_samples(synthetic_root / "pairs.csv", synthetic_root / "annotations.csv", synthetic_root / "images").rows([0, 1])
    mirrored = mirror_pair_samples(names, synthetic_root / "annotations.csv", synthetic_root / "images", plain.image_size)
    samples = plain.joined(mirrored)
    assert samples.mirrored_targets().tolist() == [False, False, True, True, True]
    assert samples.rows([4, 0]).mirrored_targets().tolist() == [True, False] and samples.shard(2, 1).mirrored_targets().tolist() == [False, True]
    batch = next(iter(make_dataset(samples, 5, options=InputOptions(shuffle=False, target_masks=True))))
    sources, targets = batch["source_image"].numpy()[:, 0], batch["target_image"].numpy()
    np.testing.assert_array_equal(targets[2:], sources[2:, :, ::-1])  # the same photo, flipped left-right
    assert not np.array_equal(targets[:2], sources[:2, :, ::-1])  # a real pair's target is its own photo
    annotations = read_annotations(synthetic_root / "annotations.csv")
    for mask, name in zip(batch["target_mask"].numpy()[2:], names):
        expected = np.asarray(annotations[name], np.float64).copy()
        present = (expected >= 0).all(axis=-1)
        expected[present, 1] = 63 - expected[present, 1]  # x mirrored in a 64-pixel-wide image, joints relabelled
        np.testing.assert_array_equal(mask[..., 0], pose_mask(expected[list(MIRRORED_JOINTS)], 128, 64).astype(np.float32))


def test_mirrored_heatmaps_are_the_heatmaps_of_the_mirrored_keypoints():
    from pnr_tf.data.keypoints import keypoints_to_heatmaps
    from pnr_tf.data.keypoints import mirror_pose_heatmaps

    rng = np.random.default_rng(2)
    keypoints = keypoints_of(rng)
    images = np.zeros((2, 16, 8, 3), np.float32)
    _, mirrored_keypoints = mirror(tf.constant(images), tf.constant(keypoints))
    # A float64 NumPy Gaussian of each mirrored joint (columns 7 - x), left and right exchanged.
    rows, columns = np.arange(16.0)[:, None], np.arange(8.0)[None, :]
    expected = np.zeros((2, 16, 8, 18))
    for example in range(2):
        for joint in range(18):
            y, x = keypoints[example, MIRRORED_JOINTS[joint]].astype(np.float64)
            if y >= 0 and x >= 0:
                expected[example, :, :, joint] = np.exp(-((rows - y) ** 2 + (columns - (7 - x)) ** 2) / (2 * 6.0**2))
    mirrored = mirror_pose_heatmaps(keypoints_to_heatmaps(tf.constant(keypoints), 16, 8))
    np.testing.assert_allclose(mirrored.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(keypoints_to_heatmaps(mirrored_keypoints, 16, 8).numpy(), expected, atol=1e-6)
