"""`FaceEmbedder(precision="int8", calibration=...)`: int8 calibrated on the caller's own faces
(no LFW), on the tiny 32x32 preset: close to float32, one cached model per set of faces, clear
errors for too few faces and unreadable files."""

import re
import shutil
import warnings

import cv2
import numpy as np
import pytest

from keras_faceset import embedder as embedder_module
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.models.quantize import MIN_CALIBRATION_FACES, calibration_key
from keras_faceset.zoo import PRESETS
from tests.cli.test_cli_train import tiny_presets
from tests.conftest import REPO
from tests.zoo.test_registry import tiny  # noqa: F401

PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))  # Powell, Serena 1, Serena 2


def _variants(image: np.ndarray) -> list[np.ndarray]:
    """Six views of a face photo that MTCNN still finds: as it is, mirrored, shrunk into a
    grey canvas, darker, brighter, mirrored with a gamma."""
    side = image.shape[0]
    canvas = np.full_like(image, 128)
    small = cv2.resize(image, (side * 3 // 4, side * 3 // 4), interpolation=cv2.INTER_AREA)
    canvas[10 : 10 + len(small), 30 : 30 + len(small)] = small
    gamma = (255 * (image / 255.0) ** 0.7).astype(np.uint8)
    return [
        image,
        image[:, ::-1],
        canvas,
        (image * 0.6).astype(np.uint8),
        np.clip(image * 0.8 + 50, 0, 255).astype(np.uint8),
        gamma[:, ::-1],
    ]


def write_faces(folder, variants) -> list:
    """PNG files of the example photos' `variants` (indices into `_variants`), one folder."""
    folder.mkdir(parents=True)
    paths = []
    for photo in PHOTOS:
        views = _variants(cv2.imread(str(photo)))
        for i in variants:
            paths.append(folder / f"{photo.stem}_{i}.png")
            cv2.imwrite(str(paths[-1]), np.ascontiguousarray(views[i]))
    return paths


def unit_frames(embedder: FaceEmbedder, chips: np.ndarray) -> np.ndarray:
    raw = embedder.frame_outputs(chips)["frame_embeddings"]
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


@pytest.fixture
def presets(tiny, monkeypatch):  # noqa: F811
    for name, preset in tiny_presets(PRESETS["tiny"]).items():
        monkeypatch.setitem(PRESETS, name, preset)


@pytest.fixture
def conversions(monkeypatch):
    """The `convert_tflite` calls the embedder makes: the calibration faces' count for int8,
    the precision for the others."""
    calls = []
    convert = embedder_module.convert_tflite

    def counted(frame_model, path, precision, chips=None):
        calls.append(precision if chips is None else len(chips))
        return convert(frame_model, path, precision, chips)

    monkeypatch.setattr(embedder_module, "convert_tflite", counted)
    return calls


def test_own_faces_calibrate_an_int8_model_close_to_float32_cached_per_set(
    presets, conversions, tmp_path, monkeypatch
):
    """On 9 faces (the minimum lowered to 8 to keep the test fast; the real one is enforced
    in the next test): cosine to float32, one conversion per set of files, keyed by bytes."""
    monkeypatch.setattr(embedder_module, "MIN_CALIBRATION_FACES", 8)
    faces = write_faces(tmp_path / "faces", range(3))  # 9 photos
    first = FaceEmbedder("tiny", precision="int8", calibration=tmp_path / "faces")
    assert conversions == [9]  # every photo gave a face
    path = first.frame_model.path
    assert re.fullmatch(r"tiny\.int8\.[0-9a-f]{16}\.tflite", path.name), path.name
    assert first.int8_calibration["images"] == 9
    assert first.int8_calibration["sha256"].startswith(path.name.split(".")[2])
    assert not (path.parent / "tiny.int8.tflite").exists()  # LFW's entry is not touched
    assert first.fallbacks == 0  # the calibration's alignments are not the caller's
    chips = first.chips(PHOTOS)
    float32 = unit_frames(FaceEmbedder("tiny"), chips)
    int8 = unit_frames(first, chips)
    cosine = np.sum(int8 * float32, axis=1)
    assert cosine.min() > 0.99, cosine
    assert np.abs(int8 - float32).max() > 1e-4  # int8, not float32

    # the same files, given as a list of copies elsewhere: the same bytes, the cached model
    copies = tmp_path / "copies"
    copies.mkdir()
    again = FaceEmbedder(
        "tiny", precision="int8", calibration=[shutil.copy(f, copies) for f in faces]
    )
    assert conversions == [9] and again.frame_model.path == path
    np.testing.assert_array_equal(unit_frames(again, chips), int8)

    # other faces: another model beside it
    write_faces(tmp_path / "other", range(3, 6))
    other = FaceEmbedder("tiny", precision="int8", calibration=tmp_path / "other")
    assert conversions == [9, 9] and other.frame_model.path != path
    assert other.frame_model.path.parent == path.parent and path.is_file()
    assert other.frame_model.path.read_bytes() != path.read_bytes()


def test_too_few_faces_say_how_many_were_found_and_unreadable_files_are_named(
    presets, conversions, tmp_path
):
    folder = tmp_path / "few"
    write_faces(folder, [0])  # 3 faces
    (folder / "broken.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(folder / "wall.png"), np.full((120, 120, 3), 200, np.uint8))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError) as error:
        warnings.simplefilter("always")
        FaceEmbedder("tiny", precision="int8", calibration=folder)
    message = str(error.value)
    assert f"found 3 face(s) in the 5 image(s) of {folder}" in message
    assert f"needs at least {MIN_CALIBRATION_FACES}" in message
    assert "1 unreadable, 1 without a face" in message
    (warning,) = [w for w in caught if "int8 calibration" in str(w.message)]
    assert "unreadable: " + str(folder / "broken.jpg") in str(warning.message)
    assert "no face: " + str(folder / "wall.png") in str(warning.message)
    assert conversions == []


def test_calibration_needs_int8_and_images(presets, tmp_path):
    with pytest.raises(ValueError, match='calibration images are for precision="int8"'):
        FaceEmbedder("tiny", calibration=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        FaceEmbedder("tiny", precision="int8", calibration=tmp_path / "empty")
    with pytest.raises(ValueError, match="empty list"):
        FaceEmbedder("tiny", precision="int8", calibration=[])


def test_the_calibration_key_is_of_the_bytes_and_the_settings(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"face a")
    b.write_bytes(b"face b")
    key = calibration_key([a, b], "dlib_resnet | five-point")
    assert key == calibration_key([a, b], "dlib_resnet | five-point")
    assert key != calibration_key([a, b], "dlib_resnet | central crop")
    assert key != calibration_key([a], "dlib_resnet | five-point")
    b.write_bytes(b"face c")
    assert key != calibration_key([a, b], "dlib_resnet | five-point")


def test_every_embedding_command_takes_calibration():
    import argparse

    from keras_faceset.cli.common import add_model_options, embedder_options
    from keras_faceset.models.quantize import CALIBRATION_IMAGES

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    args = parser.parse_args(["facenet", "--precision", "int8", "--calibration", "faces"])
    assert embedder_options(args)["calibration"] == "faces"
    assert parser.parse_args(["facenet"]).calibration is None
    (option,) = [a for a in parser._actions if a.dest == "calibration"]
    assert f"up to {CALIBRATION_IMAGES} sampled" in option.help
    assert f"at least {MIN_CALIBRATION_FACES} must show a face" in option.help


INT8_DYNAMIC_COSINE = 0.9999
"""Worst cosine of int8-dynamic frame embeddings to float32's. The tiny backbone has no kernel
of the 1,024 weights from which TFLite quantizes one, so here it stays float32 (measured
1e-7 apart): what the quantization does is tested in tests/models/test_quantize.py, on the
real presets in the slow test below."""


def test_int8_dynamic_needs_no_faces_is_cached_with_its_sha256_and_close_to_float32(
    presets, conversions, tmp_path
):
    """Converted once on first use (no calibration, no LFW, no detection), reused after,
    converted again when the cached file no longer matches its sha256."""
    first = FaceEmbedder("tiny", precision="int8-dynamic", align="center")
    assert conversions == ["int8-dynamic"]
    path = first.frame_model.path
    assert path.name == "tiny.int8-dynamic.tflite" and first.int8_calibration is None
    assert sorted(p.name for p in path.parent.glob("tiny.int8*")) == [
        "tiny.int8-dynamic.tflite",
        "tiny.int8-dynamic.tflite.sha256",
    ]
    chips = first.chips(PHOTOS)
    float32 = unit_frames(FaceEmbedder("tiny", align="center"), chips)
    dynamic = unit_frames(first, chips)
    cosine = np.sum(dynamic * float32, axis=1)
    assert cosine.min() > INT8_DYNAMIC_COSINE, cosine

    again = FaceEmbedder("tiny", precision="int8-dynamic")
    assert conversions == ["int8-dynamic"] and again.frame_model.path == path
    np.testing.assert_array_equal(unit_frames(again, chips), dynamic)

    path.write_bytes(path.read_bytes()[:-1] + b"x")  # damaged in the cache
    with pytest.warns(UserWarning, match="int8-dynamic model.*Quantizing again"):
        FaceEmbedder("tiny", precision="int8-dynamic")
    assert conversions == ["int8-dynamic", "int8-dynamic"]
    np.testing.assert_array_equal(unit_frames(again, chips), dynamic)


def test_int8_dynamic_refuses_calibration_set_presets_and_model_files(presets, tmp_path):
    with pytest.raises(ValueError, match="precision='int8-dynamic' needs none"):
        FaceEmbedder("tiny", precision="int8-dynamic", calibration=tmp_path)
    with pytest.raises(ValueError, match="precision='int8-dynamic' quantizes an image preset"):
        FaceEmbedder("nan", precision="int8-dynamic")
    with pytest.raises(ValueError, match="pretrained weights only"):
        FaceEmbedder("tiny", precision="int8-dynamic", weights=None)
    expected = "('float32', 'bfloat16', 'int8', 'int8-dynamic')"
    with pytest.raises(ValueError, match=re.escape(f"expected one of {expected}")):
        FaceEmbedder("tiny", precision="int8_dynamic")
