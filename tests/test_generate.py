"""`python -m pnr_tf.generate`: keypoints by name, from JSON or another image's pose; multi-shot; resizing; errors."""

import json

import cv2
import numpy as np
import pytest

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.generate import main as generate_main
from pnr_tf.visualize import read_rgb
from pnr_tf.visualize import write_rgb
from tests.helpers import level_difference
from tests.helpers import reference_generate


def test_single_and_multi_shot_match_the_model(tiny_model_run, synthetic_root, tmp_path):
    run_dir, generator = tiny_model_run
    annotations_path = synthetic_root / "annotations.csv"
    annotations = read_annotations(annotations_path)
    images = synthetic_root / "images"
    first, second, target = sorted(name for name in annotations if name.startswith(sorted(annotations)[0][:4]))[:3]

    out = tmp_path / "one.png"
    assert generate_main(["--model", str(run_dir), "--annotations", str(annotations_path), "--source", str(images / first),
                          "--target-pose-of", target, "--out", str(out)]) == 0  # fmt: skip
    _, expected = reference_generate(
        generator, read_rgb(images / first)[np.newaxis, np.newaxis], annotations[first][np.newaxis, np.newaxis], annotations[target][np.newaxis]
    )
    assert level_difference(read_rgb(out), expected[0]) <= 1

    # Two sources, keypoints from JSON files (one as {"keypoints": ...}), target pose from JSON; grid written.
    (tmp_path / "first.json").write_text(json.dumps(annotations[first].tolist()))
    (tmp_path / "second.json").write_text(json.dumps({"keypoints": annotations[second].tolist()}))
    (tmp_path / "target.json").write_text(json.dumps(annotations[target].tolist()))
    out, grid = tmp_path / "two.png", tmp_path / "grid.png"
    assert generate_main(["--model", str(run_dir), "--source", str(images / first), "--source-keypoints", str(tmp_path / "first.json"),
                          "--source", str(images / second), "--source-keypoints", str(tmp_path / "second.json"),
                          "--target-keypoints", str(tmp_path / "target.json"), "--out", str(out), "--grid", str(grid)]) == 0  # fmt: skip
    sources = np.stack([read_rgb(images / first), read_rgb(images / second)])[np.newaxis]
    source_keypoints = np.stack([annotations[first], annotations[second]])[np.newaxis]
    _, expected = reference_generate(generator, sources, source_keypoints, annotations[target][np.newaxis])
    assert level_difference(read_rgb(out), expected[0]) <= 1
    picture = cv2.imread(str(grid))
    assert picture.shape[0] == 128 and picture.shape[1] >= 4 * 64  # two sources | target pose | result


def test_a_larger_photo_is_resized_with_its_keypoints(tiny_model_run, synthetic_root, tmp_path):
    run_dir, _ = tiny_model_run
    annotations_path = synthetic_root / "annotations.csv"
    annotations = read_annotations(annotations_path)
    source, target = read_pairs(synthetic_root / "pairs-test.csv")[0]
    photo = read_rgb(synthetic_root / "images" / source)
    # Each pixel doubled: area resizing back to 128 x 64 is exact. Pixel (r, c) becomes the 2 x 2 block whose
    # centre is (2r + 0.5, 2c + 0.5), which must resize back to (r, c) exactly.
    write_rgb(tmp_path / "large.png", np.repeat(np.repeat(photo, 2, axis=0), 2, axis=1))
    (tmp_path / "large.json").write_text(json.dumps(np.where(annotations[source] < 0, -1, annotations[source] * 2 + 0.5).tolist()))
    (tmp_path / "target.json").write_text(json.dumps(np.where(annotations[target] < 0, -1, annotations[target] * 2 + 0.5).tolist()))
    common = ["--model", str(run_dir), "--annotations", str(annotations_path)]
    assert generate_main([*common, "--source", str(synthetic_root / "images" / source), "--target-pose-of", target,
                          "--out", str(tmp_path / "small_out.png")]) == 0  # fmt: skip
    assert generate_main([*common, "--source", str(tmp_path / "large.png"), "--source-keypoints", str(tmp_path / "large.json"),
                          "--target-keypoints", str(tmp_path / "target.json"), "--out", str(tmp_path / "large_out.png")]) == 0  # fmt: skip
    assert read_rgb(tmp_path / "large_out.png").shape == (128, 64, 3)
    assert level_difference(read_rgb(tmp_path / "large_out.png"), read_rgb(tmp_path / "small_out.png")) <= 1


def test_missing_keypoints_and_files_exit_with_a_message(tiny_model_run, synthetic_root, tmp_path, capsys):
    run_dir, _ = tiny_model_run
    annotations_path = str(synthetic_root / "annotations.csv")
    photo = str(next((synthetic_root / "images").iterdir()))
    (tmp_path / "bad.json").write_text("[[1, 2], [3, 4]]")
    (tmp_path / "unknown.png").write_bytes((synthetic_root / "images" / photo.split("/")[-1]).read_bytes())
    cases = [
        (["--annotations", annotations_path, "--source", photo, "--target-pose-of", "nobody.jpg"],
         "target image 'nobody.jpg' is not in"),
        (["--annotations", annotations_path, "--source", str(tmp_path / "absent.jpg"), "--target-pose-of", photo], "cannot read"),
        (["--source", photo, "--source-keypoints", str(tmp_path / "bad.json"), "--target-keypoints", str(tmp_path / "bad.json")],
         "expected 18 [y, x] pairs"),
        (["--source", photo, "--source", photo, "--source-keypoints", str(tmp_path / "bad.json"), "--target-keypoints", "x"],
         "one --source-keypoints per --source"),
    ]  # fmt: skip
    for arguments, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            generate_main(["--model", str(run_dir), *arguments, "--out", str(tmp_path / "out.png")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_generate_on_a_real_market_photo(tiny_model_run, shared_data, tmp_path):
    run_dir, generator = tiny_model_run
    subset = shared_data / "market_subset"
    annotations = read_annotations(subset / "annotations.csv")
    source, target = read_pairs(subset / "pairs.csv")[0]
    out = tmp_path / "market.png"
    assert generate_main(["--model", str(run_dir), "--annotations", str(subset / "annotations.csv"), "--source",
                          str(subset / "images" / source), "--target-pose-of", str(subset / "images" / target), "--out", str(out)]) == 0  # fmt: skip
    _, expected = reference_generate(
        generator, read_rgb(subset / "images" / source)[np.newaxis, np.newaxis], annotations[source][np.newaxis, np.newaxis],
        annotations[target][np.newaxis],
    )  # fmt: skip
    assert level_difference(read_rgb(out), expected[0]) <= 1


def test_a_nan_joint_is_missing_and_a_pose_without_joints_is_an_error(tiny_model_run, synthetic_root, tmp_path, capsys):
    run_dir, _ = tiny_model_run
    annotations = read_annotations(synthetic_root / "annotations.csv")
    source, target = read_pairs(synthetic_root / "pairs-test.csv")[0]
    photo = str(synthetic_root / "images" / source)
    nan_keypoints, missing_keypoints = annotations[source].astype(float).tolist(), annotations[source].astype(float).tolist()
    nan_keypoints[3], missing_keypoints[3] = [float("nan"), float("nan")], [-1, -1]
    (tmp_path / "nan.json").write_text(json.dumps(nan_keypoints))  # Python writes NaN; pose tools do too
    (tmp_path / "missing.json").write_text(json.dumps(missing_keypoints))
    (tmp_path / "target.json").write_text(json.dumps(annotations[target].tolist()))
    (tmp_path / "nobody.json").write_text(json.dumps([[-1, -1]] * 18))
    common = ["--model", str(run_dir), "--source", photo]
    for name in ("nan", "missing"):
        assert generate_main([*common, "--source-keypoints", str(tmp_path / f"{name}.json"), "--target-keypoints",
                              str(tmp_path / "target.json"), "--out", str(tmp_path / f"{name}.png")]) == 0  # fmt: skip
    with_nan = read_rgb(tmp_path / "nan.png")
    np.testing.assert_array_equal(with_nan, read_rgb(tmp_path / "missing.png"))
    assert with_nan.std() > 20
    cases = [
        (["--source-keypoints", str(tmp_path / "nobody.json"), "--target-keypoints", str(tmp_path / "target.json")],
         "every source image needs at least one visible keypoint"),
        (["--source-keypoints", str(tmp_path / "target.json"), "--target-keypoints", str(tmp_path / "nobody.json")],
         "the target pose needs at least one visible keypoint"),
    ]  # fmt: skip
    for arguments, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            generate_main([*common, *arguments, "--out", str(tmp_path / "refused.png")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "refused.png").exists()
    with pytest.raises(SystemExit) as exit_info:
        generate_main([*common, "--source-keypoints", str(tmp_path / "target.json"), "--target-keypoints", str(tmp_path / "target.json"),
                       "--out", str(tmp_path / "out.txt")])  # fmt: skip
    assert exit_info.value.code == 2 and "must end in .png, .jpg, .jpeg" in capsys.readouterr().err


def test_a_pose_sequence_is_rendered_from_one_encoding_into_frames_or_an_animation(tiny_model_run, synthetic_root, tmp_path):
    run_dir, generator = tiny_model_run
    annotations = read_annotations(synthetic_root / "annotations.csv")
    source = sorted(annotations)[0]
    poses = [annotations[name].tolist() for name in sorted(annotations)[1:5]]
    (tmp_path / "walk.json").write_text(json.dumps(poses))
    (tmp_path / "source.json").write_text(json.dumps(annotations[source].tolist()))
    common = ["--model", str(run_dir), "--source", str(synthetic_root / "images" / source), "--source-keypoints", str(tmp_path / "source.json"),
              "--pose-sequence", str(tmp_path / "walk.json")]  # fmt: skip
    assert generate_main([*common, "--out", str(tmp_path / "frame.png")]) == 0
    frames = [read_rgb(tmp_path / f"frame_{index:03d}.png") for index in range(4)]
    for pose, frame in zip(poses, frames):
        _, expected = reference_generate(generator, read_rgb(synthetic_root / "images" / source)[None, None],
                                         annotations[source][None, None], np.asarray(pose)[None])  # fmt: skip
        assert level_difference(frame, expected[0]) <= 1
    assert generate_main([*common, "--out", str(tmp_path / "walk.gif"), "--fps", "4"]) == 0
    ok, animation = cv2.imreadanimation(str(tmp_path / "walk.gif"))
    assert ok and len(animation.frames) == 4 and list(animation.durations) == [250] * 4
    assert generate_main([*common, "--out", str(tmp_path / "walk.mp4")]) == 0
    capture = cv2.VideoCapture(str(tmp_path / "walk.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 4


def test_outputs_never_overwrite_inputs_and_bad_files_are_one_line(tiny_model_run, synthetic_root, tmp_path, capsys):
    run_dir, _ = tiny_model_run
    annotations = read_annotations(synthetic_root / "annotations.csv")
    source, target = read_pairs(synthetic_root / "pairs-test.csv")[0]
    photo = tmp_path / "me.png"
    write_rgb(photo, read_rgb(synthetic_root / "images" / source))
    (tmp_path / "me.json").write_text(json.dumps(annotations[source].tolist()))
    (tmp_path / "pose.json").write_text(json.dumps(annotations[target].tolist()))
    original = photo.read_bytes()
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "empty.jpg").write_bytes(b"")
    common = ["--model", str(run_dir), "--source-keypoints", str(tmp_path / "me.json"), "--target-keypoints", str(tmp_path / "pose.json")]
    cases = [
        (["--source", str(photo), "--out", str(photo)], "--out .*me.png is the --source file: it would be overwritten"),
        (["--source", str(photo), "--out", str(tmp_path / "." / "me.png")], "is the --source file"),  # another spelling
        (["--source", str(photo), "--out", str(tmp_path / "out.png"), "--grid", str(photo)], "--grid .* is the --source file"),
        (["--source", str(photo), "--out", str(tmp_path / "out.png"), "--framed", str(tmp_path / "out.png")], "--framed and --out are the same file"),
        (["--source", str(photo), "--out", str(tmp_path / "folder.png")], "--out .*folder.png is a folder"),
        (["--source", str(tmp_path / "empty.jpg"), "--out", str(tmp_path / "out.png")], "empty.jpg is empty"),
        (["--source", str(tmp_path), "--out", str(tmp_path / "out.png")], "is a folder, not an image file"),
    ]  # fmt: skip
    for arguments, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            generate_main([*common, *arguments])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1, error
        assert __import__("re").search(message, error), (message, error)
    assert photo.read_bytes() == original and not (tmp_path / "out.png").exists()
    # The photo whose pose is the target is an input too, and so are the numbered frames of a pose sequence.
    with pytest.raises(SystemExit) as exit_info:
        generate_main(["--model", str(run_dir), "--source", str(synthetic_root / "images" / source), "--annotations",
                       str(synthetic_root / "annotations.csv"), "--target-pose-of", str(photo), "--out", str(photo)])  # fmt: skip
    assert exit_info.value.code == 2 and "is the --target-pose-of file" in capsys.readouterr().err
    (tmp_path / "walk.json").write_text(json.dumps([annotations[target].tolist()] * 2))
    write_rgb(tmp_path / "clip_001.png", read_rgb(photo))
    with pytest.raises(SystemExit) as exit_info:
        generate_main(["--model", str(run_dir), "--source", str(tmp_path / "clip_001.png"), "--source-keypoints", str(tmp_path / "me.json"),
                       "--pose-sequence", str(tmp_path / "walk.json"), "--out", str(tmp_path / "clip.png")])  # fmt: skip
    assert exit_info.value.code == 2 and "frame 1 " in capsys.readouterr().err and not (tmp_path / "clip_000.png").exists()


def test_without_model_the_pretrained_generator_is_used_and_named(tiny_model_run, synthetic_root, tmp_path, capsys, monkeypatch):
    import shutil

    from pnr_tf import pretrained

    folder = tmp_path / "pretrained"
    folder.mkdir()
    shutil.copy(tiny_model_run[0] / "generator.keras", folder / "generator.keras")
    monkeypatch.setattr(pretrained, "FOLDER", folder)
    monkeypatch.setattr(pretrained, "GENERATOR", folder / "generator.keras")
    source, target = read_pairs(synthetic_root / "pairs-test.csv")[0]
    arguments = ["--annotations", str(synthetic_root / "annotations.csv"), "--source", str(synthetic_root / "images" / source),
                 "--target-pose-of", target, "--out", str(tmp_path / "out.png")]  # fmt: skip
    assert generate_main(arguments) == 0
    assert "using the pretrained real-people generator" in capsys.readouterr().err
    assert generate_main(["--model", "pretrained", *arguments[:-1], str(tmp_path / "named.png")]) == 0
    assert "using the pretrained" not in capsys.readouterr().err  # named explicitly: no notice
    assert read_rgb(tmp_path / "named.png").tolist() == read_rgb(tmp_path / "out.png").tolist()
    # An installation without it says so in one line.
    monkeypatch.setattr(pretrained, "GENERATOR", tmp_path / "absent" / "generator.keras")
    with pytest.raises(SystemExit) as exit_info:
        generate_main(arguments)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and error.startswith("error: the pretrained generator is not in this installation")
