"""The `keras-faceset` command line. `--version` and the README's main job (verify) run as users
run them, in a subprocess; the rest in this process (`run_in_process`: the same exit codes and
output without a TensorFlow import per command)."""

import csv
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from keras_faceset import __version__, zoo
from tests.cli.helpers import (
    EXAMPLES,
    POWELL,
    SERENA_1,
    SERENA_2,
    grey,
    labelled_folder,
    no_log_lines,
    photo,
    run,
    run_in_process,
    save,
)


def test_version():
    assert run("--version").stdout.strip() == f"keras-faceset {__version__}"


def test_list_and_info():
    listing = run_in_process("list").stdout
    assert "facenet" in listing and "dlib_resnet" in listing and "research use" in listing
    assert "source.sha256: 55533b28a958" in run_in_process("info", "dlib_resnet").stdout


@pytest.mark.slow
def test_tensorflow_log_lines_are_off_unless_verbose():
    no_log_lines(run("list"))
    assert "dlib_resnet" in run("--verbose", "list").stdout  # the flag, before or after
    assert "dlib_resnet" in run("list", "--verbose").stdout


def test_unknown_model_is_a_one_line_error_and_exit_1():
    result = run_in_process("info", "facnet", check=False)
    assert result.returncode == 1
    from keras_faceset.zoo import PRESETS

    assert result.stderr.strip().splitlines() == [
        "keras-faceset info: error: Unknown model 'facnet'. Did you mean 'facenet'? "
        f"Available: {', '.join(sorted(PRESETS))}."
    ]


def _distance(output: str) -> float:
    line = next(line for line in output.splitlines() if line.startswith("cosine distance:"))
    return float(line.split(":")[1])


def test_verify_answers_with_its_exit_code_and_in_json():
    """The README's main job: exit 0 for the same person, 1 for different people."""
    from keras_faceset.zoo import get_preset

    threshold = get_preset("dlib_resnet").thresholds["1e-03"]
    same = run("verify", "dlib_resnet", SERENA_1, SERENA_2)
    no_log_lines(same)
    assert same.stdout.startswith("model: dlib_resnet (")
    assert f"decision at FAR 1e-3 (threshold {threshold:.4f}): same person" in same.stdout
    different = run_in_process(
        "verify", "dlib_resnet", SERENA_1, POWELL, "--far", "0.001", check=False
    )
    assert different.returncode == 1 and "): different people" in different.stdout
    assert _distance(same.stdout) < threshold < _distance(different.stdout)

    result = run_in_process("verify", "dlib_resnet", SERENA_1, SERENA_2, "--json")
    answer = json.loads(result.stdout)  # one object, nothing else on stdout
    assert answer["distance"] == pytest.approx(_distance(same.stdout), abs=5e-5)
    assert (answer["threshold"], answer["far"]) == (threshold, 1e-3)
    assert (answer["same"], answer["decision"], answer["error"]) == (True, "same person", None)
    assert [answer[k] for k in ("model", "a", "b")] == ["dlib_resnet", str(SERENA_1), str(SERENA_2)]
    for face in answer["faces"].values():
        assert face["face_found"] and face["face_count"] == 1 and face["detector_score"] > 0.9
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 250 and 0 <= y1 < y2 <= 250


def test_verify_missing_file_is_a_clean_error_and_exit_2(tmp_path):
    result = run_in_process("verify", "dlib_resnet", SERENA_1, tmp_path / "nope.jpg", check=False)
    assert result.returncode == 2 and "nope.jpg" in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_does_not_decide_without_a_face(tmp_path):
    a, b = grey(tmp_path / "grey_a.png", 128), grey(tmp_path / "grey_b.png", 100)
    result = run_in_process("verify", "dlib_resnet", a, b, check=False)
    assert result.returncode == 2
    assert f"no face found in {a}, {b}: no decision" in result.stderr
    assert "decision at" not in result.stdout and "cosine distance" not in result.stdout

    allowed = run_in_process("verify", "dlib_resnet", a, SERENA_1, "--allow-no-face", check=False)
    assert allowed.returncode in (0, 1) and "decision at FAR 1e-3" in allowed.stdout
    assert f"note: no face found in {a}; decided on the central crop" in allowed.stderr

    center = run_in_process(
        "verify", "dlib_resnet", a, b, "--align", "center", "--threshold", "0.1"
    )
    assert "decision at threshold 0.1 (given): same person" in center.stdout  # nothing detected
    assert "no face" not in center.stderr


def test_verify_reports_which_of_several_faces_it_used(tmp_path):
    """Serena and Colin Powell side by side: the chosen face is reported (in JSON and on
    stderr), and it is Colin Powell's (the right half), whom it matches."""
    both = save(tmp_path / "two.png", np.concatenate([photo(SERENA_1), photo(POWELL)], axis=1))
    result = run_in_process("verify", "dlib_resnet", both, POWELL, "--json")
    answer = json.loads(result.stdout)
    face = answer["faces"]["a"]
    assert face["face_count"] == 2 and face["face_found"] and answer["same"] is True
    assert face["box"][0] > 250  # Colin Powell's half
    box = ", ".join(str(round(v)) for v in face["box"])
    score = f"{face['detector_score']:.3f}"
    assert f"note: {both}: 2 faces, used the one at box [{box}] (score {score})" in result.stderr
    assert answer["faces"]["b"]["face_count"] == 1


def test_an_image_preset_says_folders_need_a_set_preset(tmp_path):
    result = run_in_process("verify", "dlib_resnet", EXAMPLES, tmp_path, check=False)
    assert result.returncode == 2 and "image file not found" not in result.stderr
    assert f"{EXAMPLES} is a folder: folders and videos are sets of frames" in result.stderr
    set_presets = ", ".join(n for n, p in zoo.PRESETS.items() if p.is_set_model)
    assert {"nan", "qan", "mean"} <= set(set_presets.split(", "))
    assert f"a set preset compares ({set_presets};" in result.stderr


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(text.splitlines()))


@pytest.mark.slow
def test_verify_pairs_decides_every_row_it_can_and_reports_the_others(tmp_path):
    faceless = grey(tmp_path / "grey.png")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "a,b\n"
        f"{SERENA_1},{SERENA_2}\n{SERENA_1},{POWELL}\n{SERENA_1},{tmp_path / 'nope.jpg'}\n"
        f"{faceless},{SERENA_2}\n{SERENA_1}\n"
    )
    out = tmp_path / "out.csv"
    result = run("verify", "dlib_resnet", "--pairs", pairs, "-o", out, check=False)
    assert result.returncode == 2 and result.stdout == ""
    rows = _rows(out.read_text())
    assert [row["error"] == "" for row in rows] == [True, True, False, False, False]
    assert [row["same"] for row in rows[:2]] == ["True", "False"]
    assert float(rows[0]["distance"]) < 0.0788 < float(rows[1]["distance"])
    assert rows[2]["error"] == f"{tmp_path / 'nope.jpg'} does not exist"
    assert rows[3]["error"].startswith(f"no face found in {faceless}: no decision")
    assert rows[3]["no_face"] == str(faceless)
    assert rows[4]["error"] == "expected two paths, in columns a and b"
    for line in (4, 5, 6):
        assert f"skipped line {line} (" in result.stderr
    assert "5 pairs at FAR 1e-3 (threshold 0.0788): 1 same, 1 different, 3 skipped" in result.stderr

    good = tmp_path / "good.csv"  # no header, to stdout: every pair decided, exit 0
    good.write_text(f"{SERENA_1},{SERENA_2}\n{SERENA_1},{POWELL}\n")
    again = _rows(run("verify", "dlib_resnet", "--pairs", good).stdout)
    assert [(r["a"], r["b"], r["distance"]) for r in again] == [
        (r["a"], r["b"], r["distance"]) for r in rows[:2]
    ]


def test_embed_a_folder_matches_verify_and_flags_each_face(tmp_path):
    out = tmp_path / "faces.npz"
    run_in_process("embed", "dlib_resnet", EXAMPLES, "-o", out)
    saved = np.load(out)
    names = [p.rsplit("/", 1)[-1] for p in saved["paths"]]
    assert names == sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    embeddings = saved["embeddings"]
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    distance = 1 - embeddings[names.index(SERENA_1.name)] @ embeddings[names.index(SERENA_2.name)]
    verify = json.loads(
        run_in_process("verify", "dlib_resnet", SERENA_1, SERENA_2, "--json").stdout
    )
    assert abs(distance - verify["distance"]) < 1e-4
    assert saved["face_found"].tolist() == [True] * 3 and saved["face_count"].tolist() == [1] * 3
    assert saved["box"].shape == (3, 4) and (saved["detector_score"] > 0.9).all()
    for side, image in (("a", SERENA_1), ("b", SERENA_2)):
        box = saved["box"][names.index(image.name)]
        np.testing.assert_allclose(box, verify["faces"][side]["box"], atol=0.06)  # JSON: 0.1 px


def test_verify_two_sets_with_nan_prints_attention_and_the_set_distance(tmp_path):
    from keras_faceset.embedder import FaceEmbedder

    set_a, set_b = tmp_path / "a", tmp_path / "b"
    set_a.mkdir(), set_b.mkdir()
    shutil.copy(SERENA_1, set_a)
    for image in (SERENA_2, POWELL):
        shutil.copy(image, set_b)
    out = run_in_process("verify", "nan", set_a, set_b, "--threshold", "0.1").stdout
    line = next(line for line in out.splitlines() if line.startswith("set B weights:"))
    weights = [float(part.split()[-1]) for part in line.split(":", 1)[1].split(",")]
    assert len(weights) == 2 and abs(sum(weights) - 1) < 2e-3
    embedder = FaceEmbedder("nan")
    (a, _), (b, expected) = embedder.embed_set([SERENA_1]), embedder.embed_set([POWELL, SERENA_2])
    np.testing.assert_allclose(weights, expected, atol=1e-3)
    assert abs(_distance(out) - (1 - float(a @ b))) < 1e-4
    assert "decision at threshold 0.1 (given): same person" in out


@pytest.fixture(scope="module")
def nan_file(tmp_path_factory):
    """zoo.load("nan") (the pretrained task) saved as a .keras file, as after fine-tuning."""
    from keras_faceset import zoo

    path = tmp_path_factory.mktemp("model") / "my_nan.keras"
    zoo.load("nan").save(path)
    return path


@pytest.mark.slow
def test_a_model_file_runs_in_verify_embed_and_evaluate(nan_file, tmp_path):
    """The saved task gives the preset's own answers; having no measured thresholds, verify
    needs --threshold."""
    result = run("verify", "nan", "--model", nan_file, SERENA_1, POWELL, check=False)
    assert result.returncode == 2
    assert f"{nan_file} has no measured thresholds" in result.stderr
    assert "give --threshold" in result.stderr

    options = ("--threshold", "0.1", "--json")
    preset = json.loads(run("verify", "nan", SERENA_1, POWELL, *options, check=False).stdout)
    result = run("verify", "nan", "--model", nan_file, SERENA_1, POWELL, *options, check=False)
    answer = json.loads(result.stdout)
    assert result.returncode == 1 and answer["model_file"] == str(nan_file)
    assert answer["distance"] == pytest.approx(preset["distance"], abs=1e-5)

    out = tmp_path / "sets.npz"
    run("embed", "nan", "--model", nan_file, SERENA_1, POWELL, "-o", out)
    first, second = np.load(out)["embeddings"]
    assert 1 - first @ second == pytest.approx(preset["distance"], abs=1e-5)

    record = tmp_path / "results.csv"
    root = labelled_folder(tmp_path / "faces")
    result = run("evaluate", "nan", "folder", root, "--model", nan_file, "--record", record)
    assert re.search(rf"model_file +{re.escape(str(nan_file))}", result.stdout)
    row = pd.read_csv(record).iloc[0]
    assert (row["model"], row["protocol"], row["pairs"]) == ("my_nan", "folder_faces", 36)
