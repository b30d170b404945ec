"""pnr_tf.inference: the contract stored in the generator file, and the keypoint rules of every path."""

import json
import warnings
import zipfile

import keras
import numpy as np
import pytest

import pnr_tf
from pnr_tf.export import export_keras
from pnr_tf.inference import InvalidCoefficientsError
from pnr_tf.inference import InvalidPoseError
from pnr_tf.inference import PoseTransfer
from pnr_tf.inference import frame_person
from tests.helpers import level_difference
from tests.helpers import random_generator_inputs
from tests.helpers import random_serving_inputs
from tests.helpers import reference_generate
from tests.helpers import spread_outputs
from tests.helpers import tiny_generator
from tests.helpers import with_contract


def test_the_contract_is_stored_in_the_keras_file_and_an_old_file_gets_todays_defaults(serving_generator, tmp_path):
    assert serving_generator.contract.image_size == (16, 8) and serving_generator.contract.heatmap_sigma == 6.0
    path = tmp_path / "model.keras"
    serving_generator.save(path)
    assert keras.models.load_model(path).contract == serving_generator.contract
    # A file written before the contract existed: the same archive with the field removed.
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["contract"]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(old)
    notices = [str(warning.message) for warning in caught if "inference contract" in str(warning.message)]
    assert len(notices) == 1 and "the size it was built for, heatmap sigma 6" in notices[0]
    assert loaded.contract == pnr_tf.models.generator.InferenceContract(16, 8, 6.0)


def test_a_contract_that_disagrees_with_the_built_size_is_refused():
    generator = pnr_tf.PNRGenerator(
        appearance_encoder=pnr_tf.AppearanceEncoder(4, 1), pose_encoder=pnr_tf.PoseEncoder(4, 1, pose_dim=4),
        decoder=pnr_tf.ImageDecoder(4, 1), contract={"image_height": 32, "image_width": 16},
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"contract is \(32, 16\) images, but it is built for \(16, 8\)"):
        generator(random_generator_inputs(batch_size=1, height=16, width=8))


def test_generate_equals_the_model_on_numpy_heatmaps(serving_generator):
    images, source_keypoints, target_keypoints = random_serving_inputs(3, 2, seed=4)
    _, expected = reference_generate(serving_generator, images, source_keypoints, target_keypoints)
    output = PoseTransfer(serving_generator).generate(images, source_keypoints, target_keypoints, batch_size=2)
    assert output.dtype == np.uint8 and level_difference(output, expected) <= 1


def test_a_nan_joint_is_a_missing_joint_not_a_black_image(serving_generator):
    model = PoseTransfer(serving_generator)
    images, source_keypoints, target_keypoints = random_serving_inputs(2, 1, seed=5)
    missing_source, missing_target = source_keypoints.copy(), target_keypoints.copy()
    missing_source[0, 0, 4] = -1.0
    missing_target[1, 7] = -1.0
    nan_source, nan_target = source_keypoints.copy(), target_keypoints.copy()
    nan_source[0, 0, 4, 1] = np.nan  # one coordinate is enough
    nan_target[1, 7] = np.nan
    with_nan = model.generate(images, nan_source, nan_target)
    np.testing.assert_array_equal(with_nan, model.generate(images, missing_source, missing_target))
    assert with_nan.std() > 20  # a picture, not a constant


@pytest.mark.parametrize("broken", ["source", "target"])
@pytest.mark.parametrize("value", [-1.0, np.nan, 1e9])
def test_a_pose_without_any_visible_joint_is_refused(serving_generator, broken, value):
    images, source_keypoints, target_keypoints = random_serving_inputs(2, 2, seed=6)
    if broken == "source":
        source_keypoints[1, 1] = value
        message = r"example 1: every source image needs at least one visible keypoint .*source\(s\) \[1\]"
    else:
        target_keypoints[0] = value
        message = "example 0: the target pose needs at least one visible keypoint"
    with pytest.raises(InvalidPoseError, match=message):
        PoseTransfer(serving_generator).generate(images, source_keypoints, target_keypoints)


def test_a_photo_of_the_models_shape_that_the_person_fills_is_resized_with_its_keypoints():
    photo = np.zeros((256, 128, 3), np.uint8)
    keypoints = np.array([[100.0, 30.0], [-1.0, -1.0], [np.nan, 5.0], [0.0, 0.0], [255.0, 127.0]] + [[9.0, 9.0]] * 13, np.float32)
    crop = frame_person(photo, (128, 64), keypoints)
    assert crop.image.shape == (128, 64, 3) and crop.box == (0.0, 0.0, 256.0, 128.0)
    # Pixel centres map to pixel centres: (y + 0.5) * 128 / 256 - 0.5 and (x + 0.5) * 64 / 128 - 0.5, by hand.
    np.testing.assert_allclose(crop.keypoints[0], [49.75, 14.75], rtol=1e-6)
    np.testing.assert_array_equal(crop.keypoints[1:3], -1.0)
    # The corner pixels' centres land in the outer half of the output's corner pixels: on their centres.
    np.testing.assert_allclose(crop.keypoints[3:5], [[0.0, 0.0], [127.0, 63.0]])


def test_a_photo_of_another_shape_is_cut_around_the_person_not_squashed():
    photo = np.zeros((300, 400, 3), np.uint8)  # landscape: resizing it whole would squash the person
    keypoints = np.full((18, 2), -1.0, np.float32)
    keypoints[[0, 1, 8, 11, 10, 13]] = [[60, 200], [90, 200], [170, 190], [170, 210], [260, 190], [260, 210]]
    crop = frame_person(photo, (128, 64), keypoints)
    top, left, height, width = crop.box
    assert height / width == pytest.approx(2.0) and left < 190 and left + width > 210 and top < 60 and top + height > 260
    np.testing.assert_allclose(crop.keypoints[1], (np.array([90, 200]) - [top, left] + 0.5) * [128 / height, 64 / width] - 0.5, atol=1e-4)


def test_the_loaded_model_follows_its_own_contract(tmp_path):
    keras.utils.set_random_seed(1)
    generator = tiny_generator()
    generator(random_generator_inputs(batch_size=1, height=24, width=12))
    generator.save(tmp_path / "g.keras")
    model = PoseTransfer.load(tmp_path / "g.keras")
    assert model.image_size == (24, 12)
    with pytest.raises(ValueError, match=r"\(batch, M, 24, 12, 3\)"):
        model.generate(np.zeros((1, 16, 8, 3), np.uint8), np.zeros((1, 18, 2)), np.zeros((1, 18, 2)))


def test_encode_once_render_many_equals_generating_each_pose(serving_generator):
    model = PoseTransfer(serving_generator)
    images, source_keypoints, target_keypoints = random_serving_inputs(5, 2, seed=8)
    person = model.encode(images[0], source_keypoints[0])  # one person from two photos
    assert person.shape == (1, 4, 16)
    frames = model.render(person, target_keypoints)  # that person in five poses
    each = model.generate(np.repeat(images[:1], 5, axis=0), np.repeat(source_keypoints[:1], 5, axis=0), target_keypoints)
    assert level_difference(frames, each) <= 1 and frames.std() > 20
    with pytest.raises(InvalidPoseError, match=r"pose\(s\) \[2\]: the target pose needs"):
        broken = target_keypoints.copy()
        broken[2] = np.nan
        model.render(person, broken)
    for bad_value in (np.nan, np.inf):
        broken_person = person.copy()
        broken_person[0, 2, 3] = bad_value
        with pytest.raises(InvalidCoefficientsError, match="must be finite"):
            model.render(broken_person, target_keypoints)
    with pytest.raises(InvalidCoefficientsError, match=r"shape \(1, 4, 16\)"):
        model.render(person[:, :3], target_keypoints)


@pytest.mark.parametrize("num_sources", [1, 2])
def test_test_time_mirror_draws_the_mean_of_the_drawing_and_the_mirrored_one(num_sources):
    keras.utils.set_random_seed(3)
    generator = spread_outputs(tiny_generator(norm="instance", seed=3), random_generator_inputs(batch_size=2, height=16, width=8))
    images, source_keypoints, target_keypoints = random_serving_inputs(2, num_sources, seed=5)
    _, once = reference_generate(generator, images, source_keypoints, target_keypoints)
    _, expected = reference_generate(generator, images, source_keypoints, target_keypoints, mirror=True)
    assert level_difference(expected, once) > 2  # the two drawings differ: the mean is not the first
    assert PoseTransfer(generator).test_time_mirror is False  # the contract's setting
    averaged = PoseTransfer(generator, test_time_mirror=True).generate(images, source_keypoints, target_keypoints)
    assert level_difference(averaged, expected) <= 1
    # A contract that asks for it is followed without the option, and the option overrides it.
    mirroring = with_contract(generator, test_time_mirror=True)
    assert level_difference(PoseTransfer(mirroring).generate(images, source_keypoints, target_keypoints), expected) <= 1
    assert level_difference(PoseTransfer(mirroring, test_time_mirror=False).generate(images, source_keypoints, target_keypoints), once) <= 1


def test_test_time_mirror_leaves_encode_and_render_to_one_drawing():
    keras.utils.set_random_seed(4)
    generator = tiny_generator(norm="instance", seed=4)
    generator(random_generator_inputs(height=16, width=8))  # built for 16 x 8 photos
    images, source_keypoints, target_keypoints = random_serving_inputs(1, 2, seed=6)
    plain, mirroring = PoseTransfer(generator), PoseTransfer(generator, test_time_mirror=True)
    coefficients = plain.encode(images[0], source_keypoints[0])
    np.testing.assert_array_equal(mirroring.encode(images[0], source_keypoints[0]), coefficients)
    np.testing.assert_array_equal(mirroring.render(coefficients, target_keypoints), plain.render(coefficients, target_keypoints))


def test_test_time_mirror_is_kept_in_the_contract_of_the_keras_file_and_read_from_older_files(tmp_path):
    generator = tiny_generator(norm="instance")
    generator(random_generator_inputs(height=16, width=8))
    generator = with_contract(generator, test_time_mirror=True)
    export_keras(generator, tmp_path / "mirroring.keras")
    assert PoseTransfer.load(tmp_path / "mirroring.keras").test_time_mirror is True
    config = generator.get_config()
    older = dict(config, contract={key: value for key, value in config["contract"].items() if key != "test_time_mirror"})
    assert pnr_tf.PNRGenerator.from_config(dict(older, test_time_mirror=True)).contract.test_time_mirror is True  # kept on the generator
    assert pnr_tf.PNRGenerator.from_config(older).contract.test_time_mirror is False  # saved before the setting existed
