"""`keras-faceset embed` and `evaluate sets|folder` on small real inputs made from the example
photos (the slow tests use LFW from ../shared): one embed and one evaluate command (and the slow
ones) through a subprocess, as users run them, the others in this process (`run_in_process`)."""

import importlib.util
import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from keras_faceset.eval.verification import best_threshold, kfold_accuracy, tar_at_far
from tests.cli.helpers import (
    EXAMPLES,
    POWELL,
    SERENA_1,
    SERENA_2,
    grey,
    labelled_folder,
    no_log_lines,
    run,
    run_in_process,
    save,
    variants,
    write_video,
)
from tests.conftest import LFW_DIR, require

HAS_PARQUET = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))
NOT_AN_IMAGE = "Unknown image file format"
TRUNCATED = "Invalid JPEG data"


def unreadable_files(folder):
    """A .jpg that is text and a JPEG cut short, in `folder`."""
    (folder / "notes.jpg").write_text("not an image")
    (folder / "cut.jpg").write_bytes(SERENA_1.read_bytes()[:3000])
    return folder / "notes.jpg", folder / "cut.jpg"


def test_embed_sets_round_trip(tmp_path):
    frames = tmp_path / "serena"
    frames.mkdir()
    for image in (SERENA_1, SERENA_2):
        shutil.copy(image, frames)
    notes, _ = unreadable_files(tmp_path)
    shutil.move(notes, frames / "notes.jpg")  # a file in a set that is no image: skipped
    write_video(tmp_path / "clip.avi", [POWELL, SERENA_1, POWELL, SERENA_2, POWELL])
    out = tmp_path / "sets.npz"
    result = run(
        "embed", "nan", frames, tmp_path / "clip.avi", POWELL, "--max-frames", 3, "-o", out
    )
    no_log_lines(result)
    assert "3 sets, embeddings of dimension 128" in result.stdout
    assert f"keras-faceset embed: skipped {frames / 'notes.jpg'}: cannot decode" in result.stderr
    errors = pd.read_csv(tmp_path / "sets.npz.errors.csv")
    assert errors["path"].tolist() == [str(frames / "notes.jpg")]
    assert NOT_AN_IMAGE in errors["reason"].iloc[0]
    saved = np.load(out)
    assert sorted(saved.files) == sorted(
        ["embeddings", "frames", "lengths", "sets", "weights"]
        + ["face_found", "detector_score", "box", "face_count"]
    )
    assert saved["sets"].tolist() == [str(frames), str(tmp_path / "clip.avi"), str(POWELL)]
    assert saved["embeddings"].shape == (3, 128) and saved["weights"].shape == (3, 3)
    np.testing.assert_array_equal(saved["lengths"], [2, 3, 1])
    np.testing.assert_allclose(np.linalg.norm(saved["embeddings"], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(saved["weights"].sum(axis=1), 1, atol=1e-5)  # padding weighs 0
    video = str(tmp_path / "clip.avi")
    assert saved["frames"].tolist() == [
        [str(frames / SERENA_1.name), str(frames / SERENA_2.name), ""],
        [f"{video}#0", f"{video}#2", f"{video}#4"],  # even_indices(5, 3)
        [str(POWELL), "", ""],
    ]
    real = saved["frames"] != ""  # a face in every frame; the padding has none
    np.testing.assert_array_equal(saved["face_found"], real)
    np.testing.assert_array_equal(saved["face_count"], real.astype(int))
    score = saved["detector_score"]
    assert (score[real] > 0.9).all() and (score[~real] == 0).all()
    assert saved["box"].shape == (3, 3, 4) and (saved["box"][~real] == 0).all()
    from keras_faceset.embedder import FaceEmbedder

    embeddings, weights, faces = FaceEmbedder("nan").embed_sets(
        [[SERENA_1, SERENA_2], [POWELL]], return_faces=True
    )
    np.testing.assert_allclose(saved["embeddings"][[0, 2]], embeddings, atol=1e-5)
    np.testing.assert_allclose(saved["weights"][0, :2], weights[0], atol=1e-5)
    np.testing.assert_allclose(saved["box"][[0, 0, 2], [0, 1, 0]], faces.boxes, atol=1e-4)
    np.testing.assert_allclose(
        saved["detector_score"][[0, 0, 2], [0, 1, 0]], faces.confidence, atol=1e-6
    )


def test_embed_skips_unreadable_files_and_flags_rows_without_a_face(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in (SERENA_1, SERENA_2, POWELL):
        shutil.copy(image, folder)
    faceless = grey(folder / "grey.png")
    notes, cut = unreadable_files(folder)
    out = tmp_path / "faces.parquet"
    result = run_in_process("embed", "dlib_resnet", folder, "-o", out, check=False)
    if not HAS_PARQUET:
        assert result.returncode == 1 and "needs pyarrow" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert "4 images, embeddings of dimension 128" in result.stdout
    assert "2 skipped (could not be read)" in result.stdout
    for path, reason in ((notes, NOT_AN_IMAGE), (cut, TRUNCATED)):
        start = f"keras-faceset embed: skipped {path}: "
        assert reason in next(x for x in result.stderr.splitlines() if x.startswith(start))
    errors = pd.read_csv(tmp_path / "faces.parquet.errors.csv")
    assert sorted(errors["path"]) == sorted([str(notes), str(cut)])
    table = pd.read_parquet(out)
    assert table.columns.tolist() == [
        "path", "face_found", "detector_score", "box", "face_count", "embedding"
    ]  # fmt: skip
    by_name = table.set_index(table["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    assert by_name["face_found"].to_dict() == {
        "Colin_Powell_0001.jpg": True, "Serena_Williams_0001.jpg": True,
        "Serena_Williams_0002.jpg": True, "grey.png": False,
    }  # fmt: skip
    assert by_name.loc["grey.png", ["face_count", "detector_score"]].tolist() == [0, 0]
    assert (by_name.drop("grey.png")["detector_score"] > 0.9).all()
    assert all(len(box) == 4 for box in table["box"])
    assert "no face found in 1 image(s)" in result.stdout and str(faceless) in set(table["path"])

    again = run_in_process("embed", "dlib_resnet", SERENA_1, "-o", out)  # no errors: no stale list
    assert "skipped" not in again.stdout and not (tmp_path / "faces.parquet.errors.csv").exists()


def test_embed_output_suffix(tmp_path):
    result = run_in_process("embed", "dlib_resnet", EXAMPLES, "-o", tmp_path / "x.csv", check=False)
    assert result.returncode == 1 and "output must end in .npz or .parquet" in result.stderr


def test_evaluate_needs_root_for_folder_only(tmp_path):
    result = run_in_process("evaluate", "dlib_resnet", "folder", check=False)
    assert result.returncode == 1 and "give ROOT" in result.stderr
    result = run_in_process("evaluate", "dlib_resnet", "lfw", tmp_path, check=False)
    assert "give ROOT" in result.stderr


def test_evaluate_folder_equals_brute_force_on_the_same_embeddings(tmp_path):
    root = labelled_folder(tmp_path / "faces")
    result = run_in_process("evaluate", "dlib_resnet", "folder", root, "--out", tmp_path / "out")
    no_log_lines(result)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").iloc[0]
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "out" / "roc.png").stat().st_size > 0

    from keras_faceset.embedder import FaceEmbedder

    paths = sorted(root.glob("*/*.png"))
    embeddings = FaceEmbedder("dlib_resnet").embed(paths)
    expected = {}
    for a, b in itertools.combinations(range(len(paths)), 2):
        key = tuple(p.relative_to(root).as_posix() for p in (paths[a], paths[b]))
        expected[key] = (paths[a].parent == paths[b].parent, float(embeddings[a] @ embeddings[b]))
    assert len(scores) == len(expected) == 36
    assert (summary["genuine"], summary["impostor"]) == (18, 18)
    for row in scores.itertuples():
        same, score = expected[(row.item_a, row.item_b)]
        assert row.same == same and abs(row.score - score) < 1e-5
    pairs = list(zip(scores.item_a, scores.item_b, strict=True))
    labels = np.array([expected[pair][0] for pair in pairs])
    brute = np.array([expected[pair][1] for pair in pairs])
    assert summary["auc"] == pytest.approx(metrics.roc_auc_score(labels, brute))
    fpr, tpr, _ = metrics.roc_curve(labels, brute, drop_intermediate=False)
    assert summary["tar@far=0.1"] == pytest.approx(tpr[fpr <= 0.1].max())
    assert summary["tar@far=0.1"] == pytest.approx(tar_at_far(brute, labels, 0.1))
    kfold = kfold_accuracy(brute, labels, scores["fold"].to_numpy())
    assert (summary["accuracy"], summary["std"]) == pytest.approx((kfold.mean, kfold.std))
    # the threshold as a cosine distance, as verify takes it; TAR@FAR only where measurable
    assert "threshold" not in summary
    distance, _ = best_threshold(1 - brute, labels, higher_is_same=False)
    assert summary["distance_threshold"] == pytest.approx(distance, abs=1e-6)
    assert np.isnan(summary["tar@far=0.01"]) and np.isnan(summary["tar@far=0.001"])
    assert "n/a (18 impostor pairs < 100)" in result.stdout
    assert "n/a (18 impostor pairs < 1,000)" in result.stdout


def _sets_folder(root):
    """root/<identity>/<set or video>: Serena_Williams s1, s2 (2 frames each) and Colin_Powell
    s1 (2 frames), s2 (1 frame) and clip.avi (3 frames): 10 pairs, 4 genuine."""
    serena = [image for photo in (SERENA_1, SERENA_2) for image in variants(photo)[:2]]
    powell = variants(POWELL)
    for person, sets in (
        ("Serena_Williams", {"s1": serena[:2], "s2": serena[2:]}),
        ("Colin_Powell", {"s1": powell[:2], "s2": powell[2:]}),
    ):
        for name, images in sets.items():
            for i, image in enumerate(images):
                save(root / person / name / f"{i}.png", image)
    write_video(root / "Colin_Powell" / "clip.avi", powell)
    return root


def test_evaluate_folder_of_sets_and_videos_records_calibrates_and_writes_nothing_else(tmp_path):
    root = _sets_folder(tmp_path / "sets")
    work = tmp_path / "work"
    work.mkdir()
    options = ("--record", "results.csv", "--calibrate")
    result = run("evaluate", "qan", "folder", root, *options, cwd=work)
    no_log_lines(result)
    written = [p.name for p in work.iterdir() if not p.name.startswith(".")]  # not the lock
    assert written == ["results.csv"]  # no report without --out
    assert "wrote" not in result.stdout
    assert "FAR 1e-02: not measurable (6 impostor pairs < 100)" in result.stdout
    row = pd.read_csv(work / "results.csv").iloc[0]
    assert row[["model", "protocol", "alignment"]].tolist() == ["qan_dlib", "folder_sets", "preset"]
    assert row["pairs"] == 10 and np.isnan(row["tar@far=1e-2"]) and np.isnan(row["tar@far=1e-3"])
    printed = {
        line.split()[0]: line.split(None, 1)[1]
        for line in result.stdout.splitlines()
        if line.split() and line.split()[0] in ("accuracy", "genuine", "items", "impostor")
    }
    assert (printed["genuine"], printed["impostor"], printed["items"]) == ("4", "6", "5")
    assert float(printed["accuracy"]) == pytest.approx(row["accuracy"], abs=1e-5)


@pytest.mark.slow
def test_a_set_preset_on_lfw_scores_each_image_as_a_set_of_one(tmp_path):
    """NAN has no projection, so a set of one frame is the unit dlib frame embedding."""
    data = require(LFW_DIR)
    options = ["--data", data, "--pairs-per-fold", 3, "--chip-cache", tmp_path / "chips"]
    for model in ("nan", "dlib_resnet"):
        run("evaluate", model, "lfw", *options, "--out", tmp_path / model)
    nan, dlib = (pd.read_csv(tmp_path / m / "scores.csv") for m in ("nan", "dlib_resnet"))
    assert len(nan) == 60
    np.testing.assert_allclose(nan["score"], dlib["score"], atol=1e-5)


@pytest.fixture(scope="session")
def caches(tmp_path_factory):
    return tmp_path_factory.mktemp("lfw_sets_caches")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nan", "nan1", "qan"])
def test_evaluate_sets_reproduces_the_recorded_rows_and_the_shipped_thresholds(name, caches):
    """Within a pair or two: the recorded rows came from the research script's chip cache;
    MTCNN run afresh here (other batches) moves a few landmarks by a hair."""
    from keras_faceset import zoo

    preset = zoo.get_preset(name)
    result = run(
        "evaluate", name, "sets", "--data", require(LFW_DIR), "--chip-cache", caches / "chips",
        "--frame-cache", caches / "frames", "--out", caches / name, "--calibrate",
    )  # fmt: skip
    recorded = zoo.results().set_index(["model", "protocol"])
    for variant in ("clean", "degraded"):
        summary = pd.read_csv(caches / name / f"lfw_sets_{variant}" / "summary.csv").iloc[0]
        row = recorded.loc[(preset.head.results_model, f"lfw_sets_{variant}")]
        assert summary["accuracy"] == pytest.approx(row["accuracy"], abs=2.5e-3)  # 2 of 800
        assert summary["auc"] == pytest.approx(row["auc"], abs=5e-4)
        assert summary["tar@far=0.01"] == pytest.approx(row["tar@far=1e-2"], abs=5e-3)
    line = next(line for line in result.stdout.splitlines() if "thresholds={" in line)
    printed = eval(line.strip().removeprefix("thresholds=").rstrip(","))  # noqa: S307
    assert printed.keys() == preset.thresholds.keys() == {"1e-02"}
    assert printed["1e-02"] == pytest.approx(preset.thresholds["1e-02"], abs=2e-3)
    assert "FAR 1e-03: not measurable (800 impostor pairs < 1,000)" in result.stdout


def _small_lfw_sets(root):
    """An LFW-style folder of the example faces (`variants`) and a degraded LFW-sets pair list
    over it: 2 folds of 2 genuine + 2 impostor pairs."""
    people = {"Serena_Williams": [SERENA_1, SERENA_2], "Colin_Powell": [POWELL]}
    for person, photos in people.items():
        images = [image for photo in photos for image in variants(photo)]
        for number, image in enumerate(images, 1):
            save(root / "lfw-deepfunneled" / person / f"{person}_{number:04d}.jpg", image)

    def frames(person, *numbers):
        return [f"{person}/{person}_{n:04d}.jpg" for n in numbers]

    blur = {"kind": "blur", "severity": 0.4, "seed": [1, 2]}
    noise = {"kind": "noise", "severity": 0.3, "seed": [3, 4]}
    serena, powell = "Serena_Williams", "Colin_Powell"
    pairs = [
        (0, True, frames(serena, 1, 2), frames(serena, 4, 5)),
        (0, True, frames(powell, 1), frames(powell, 2, 3)),
        (0, False, frames(serena, 1, 3), frames(powell, 1, 2)),
        (0, False, frames(serena, 6), frames(powell, 3)),
        (1, True, frames(serena, 3, 6), frames(serena, 2)),
        (1, True, frames(powell, 2), frames(powell, 1, 3)),
        (1, False, frames(serena, 4), frames(powell, 2)),
        (1, False, frames(serena, 2, 5), frames(powell, 1, 3)),
    ]
    header = {"protocol": {"name": "lfw_sets", "version": 1, "variant": "degraded"}}
    lines = [json.dumps(header)]
    for fold, same, set_a, set_b in pairs:
        names = [set_a[0].split("/")[0], set_b[0].split("/")[0]]
        lines.append(
            json.dumps(
                {
                    "fold": fold, "same": same, "name_a": names[0], "name_b": names[1],
                    "set_a": set_a, "set_b": set_b,
                    "degrade_a": [blur] + [None] * (len(set_a) - 1),
                    "degrade_b": [None] * (len(set_b) - 1) + [noise],
                }
            )
        )  # fmt: skip
    (root / "protocols").mkdir()
    (root / "protocols" / "lfw_sets_degraded.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_evaluate_sets_on_a_small_protocol_with_an_image_model_and_the_frame_cache(tmp_path):
    """A small degraded LFW-sets pair list, dlib_resnet mean-pooled; the second run reads
    every frame from the cache and gives the same scores."""
    data = _small_lfw_sets(tmp_path / "lfw")
    options = ["--data", data, "--variant", "degraded", "--protocol-dir", data / "protocols"]
    options += ["--frame-cache", tmp_path / "frames", "--chip-cache", tmp_path / "chips"]
    for out in ("first", "again"):
        result = run("evaluate", "dlib_resnet", "sets", *options, "--out", tmp_path / out)
        no_log_lines(result)
    first, again = (
        pd.read_csv(tmp_path / out / "lfw_sets_degraded" / "scores.csv")
        for out in ("first", "again")
    )
    assert len(first) == 8 and first["same"].sum() == 4
    np.testing.assert_array_equal(first["score"], again["score"])
    assert len(list((tmp_path / "frames").glob("lfw_sets_dlib_resnet_*.npz"))) == 1
    summary = pd.read_csv(tmp_path / "first" / "lfw_sets_degraded" / "summary.csv").iloc[0]
    assert summary["pairs"] == 8 and summary["auc"] == 1.0
    assert 1 - first["score"].max() <= summary["distance_threshold"] <= 1 - first["score"].min()


def test_verify_two_sets_defaults_to_the_set_preset_threshold_at_far_1e2(tmp_path):
    from keras_faceset.zoo import get_preset

    for name, images in (("a", [SERENA_1]), ("b", [SERENA_2, POWELL])):
        (tmp_path / name).mkdir()
        for image in images:
            shutil.copy(image, tmp_path / name)
    out = run_in_process("verify", "nan", tmp_path / "a", tmp_path / "b", check=False).stdout
    threshold = get_preset("nan").thresholds["1e-02"]
    assert f"decision at FAR 1e-2 (threshold {threshold:.4f}):" in out
