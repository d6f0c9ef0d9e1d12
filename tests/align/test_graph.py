"""In-graph alignment (`FaceChips`) against the NumPy crops it reproduces (`crop_face`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_faceset.align import (
    DLIB_WEIGHTS,
    CropSpec,
    MtcnnDetector,
    arcface_template,
    crop_face,
    select_face,
    umeyama,
)
from keras_faceset.align.crop import centre_box, margin_box
from keras_faceset.align.graph import (
    FaceChips,
    centre_rects,
    margin_rects,
    similarity_to_template,
)
from keras_faceset.zoo import get_preset
from tests.checks import assert_keras_file_round_trip
from tests.conftest import LFW_DIR, require

PRESETS = ("facenet", "dlib_resnet")
MAX_MAD = 1.5
"""The largest mean |in-graph chip - crop_face chip| allowed, in uint8 levels."""
# MTCNN's points relative to the box centre, in box sides (a frontal face)
FACE = np.array([[-0.18, -0.1], [0.18, -0.1], [0.0, 0.08], [-0.15, 0.25], [0.15, 0.25]])


def textured(rng, height, width):
    """A photo-like uint8 image: smooth random colour blobs plus fine grain."""
    coarse = rng.integers(0, 256, (height // 6 + 2, width // 6 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def random_faces(rng, shapes, count):
    """`count` faces in images of `shapes` (h, w): image index, MTCNN-like boxes (centres
    anywhere in the image, so some cross its border) and landmarks (rotated up to 30 degrees)."""
    index = rng.integers(0, len(shapes), count).astype(np.int32)
    heights, widths = np.array(shapes, float)[index].T
    centre = rng.uniform(0.0, 1.0, (count, 2)) * np.stack([widths, heights], 1)
    side = rng.uniform(30.0, 0.8 * np.minimum(heights, widths))
    boxes = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] * 0.6], 1)
    angle = rng.uniform(-0.5, 0.5, count)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    points = np.einsum("kd,nde->nke", FACE, rotation) * side[:, None, None]
    landmarks = points + centre[:, None] + rng.normal(0, 1.5, (count, 5, 2))
    return index, boxes.astype(np.float32), landmarks.astype(np.float32)


def reference_chips(images, spec, index, boxes, landmarks, found):
    chips = []
    for i, image_id in enumerate(index):
        face = (boxes[i], landmarks[i]) if found[i] else ()
        chips.append(crop_face(images[image_id], spec, *face))
    return np.stack(chips).astype(np.float32)


def mean_abs(a, b):
    """Per-chip mean absolute difference (N,)."""
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(axis=(1, 2, 3))


@pytest.fixture(scope="module")
def batch():
    """Three 250 x 250 textured images and 40 faces, 8 of them not found."""
    rng = np.random.default_rng(15)
    images = np.stack([textured(rng, 250, 250) for _ in range(3)])
    index, boxes, landmarks = random_faces(rng, [(250, 250)] * 3, 40)
    found = np.ones(40, bool)
    found[rng.choice(40, 8, replace=False)] = False
    return images, index, boxes, landmarks, found


@pytest.mark.parametrize(
    "template, weights",
    [("dlib", DLIB_WEIGHTS), ("dlib", None), ("arcface", None), ("random", "random")],
)
def test_similarity_equals_umeyama(rng, template, weights):
    if template == "dlib":
        points = np.array(get_preset("dlib_resnet").crop_spec.template)
    elif template == "arcface":
        points = arcface_template(112)
    else:
        points = rng.uniform(0, 150, (5, 2))
        weights = rng.uniform(0, 3, 5)
    # random rotations, scales, translations; mirrored faces too (the fit must not reflect)
    landmarks = rng.normal(0, 1, (60, 5, 2)) * rng.uniform(5, 300, (60, 1, 1))
    landmarks[::3, :, 0] *= -1
    landmarks += rng.uniform(-200, 1500, (60, 1, 2))
    expected = np.stack([umeyama(face, points, weights) for face in landmarks])
    got = similarity_to_template(tf.constant(landmarks), points, weights)
    assert got.dtype == tf.float64
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=0)
    assert np.all(np.linalg.det(got.numpy()[:, :, :2]) > 0)
    # float32 landmarks: float32 matrices, to float32 precision (translations reach 3000 px)
    landmarks = landmarks.astype(np.float32)
    expected = np.stack([umeyama(face, points, weights) for face in landmarks])
    single = similarity_to_template(tf.constant(landmarks), points, weights)
    assert single.dtype == tf.float32
    np.testing.assert_allclose(single.numpy(), expected, atol=1e-5, rtol=1e-6)


def test_similarity_rejects_bad_arguments():
    landmarks = tf.zeros((2, 5, 2))
    with pytest.raises(ValueError, match="weights must be 5 non-negative"):
        similarity_to_template(landmarks, arcface_template(), [1, 1, 1, 1, -1])
    with pytest.raises(ValueError, match=r"template must be \(K, 2\)"):
        similarity_to_template(landmarks, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"similarity_to_template: landmarks .* \(N, 5, 2\)"):
        similarity_to_template(tf.zeros((2, 4, 2)), arcface_template())


def test_rectangles_equal_the_numpy_ones(rng):
    shapes = rng.integers(20, 400, (300, 2))
    boxes = rng.uniform(-80, 450, (300, 4))
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(-10, 200, (300, 2))  # some empty or outside
    for margin in (0.0, 32.0, 13.0):
        got = margin_rects(boxes, margin, shapes[:, 0], shapes[:, 1]).numpy()
        want = [
            margin_box(box, margin, tuple(shape)) for box, shape in zip(boxes, shapes, strict=True)
        ]
        np.testing.assert_array_equal(got, want)
    shapes = np.concatenate([shapes, [[250, 250], [11, 11], [400, 300], [1, 7]]])
    for fraction in ((0.49, 0.62), (0.47, 0.47), (0.5, 0.5), (1.0, 0.3)):
        got = centre_rects(shapes[:, 0], shapes[:, 1], fraction).numpy()
        want = [centre_box(tuple(shape), fraction) for shape in shapes]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("preset", PRESETS)
def test_chips_match_crop_face(batch, preset):
    spec = get_preset(preset).crop_spec
    images, index, boxes, landmarks, found = batch
    chips = FaceChips(spec)(images, index, boxes, landmarks, found).numpy()
    expected = reference_chips(images, spec, index, boxes, landmarks, found)
    assert chips.shape == expected.shape == (40, spec.size, spec.size, 3)
    assert chips.dtype == np.float32 and np.array_equal(chips, np.round(chips))
    mad = mean_abs(chips, expected)
    assert mad.max() <= MAX_MAD, mad
    # measured: mean 0.02 (facenet), 0.000 (dlib_resnet); half a pixel off: 8-9 levels
    assert mad.mean() <= 0.1, mad.mean()
    assert np.abs(chips - expected).max() <= 1.0


@pytest.mark.parametrize("preset", PRESETS)
def test_half_a_pixel_off_would_fail(batch, preset):
    """The tolerance discriminates: chips of faces moved by half a pixel differ by more."""
    spec = get_preset(preset).crop_spec
    images, index, boxes, landmarks, found = batch
    chips = FaceChips(spec)(images, index, boxes + 0.5, landmarks + 0.5, found).numpy()
    expected = reference_chips(images, spec, index, boxes, landmarks, found)
    assert mean_abs(chips, expected)[found].mean() > 1.0


@pytest.mark.parametrize("preset", PRESETS)
def test_border_faces_pad_with_zeros_and_never_read_the_padding(rng, preset):
    """Faces crossing the border of small images in a batch padded with 255: the chips equal
    those of the unpadded images (the warp's outside is 0, the box is clipped to the true
    size), given the true sizes."""
    spec = get_preset(preset).crop_spec
    shapes = [(120, 90), (200, 260), (75, 75)]
    images = [textured(rng, h, w) for h, w in shapes]
    padded = np.full((3, 200, 260, 3), 255, np.uint8)
    for slot, image in zip(padded, images, strict=True):
        slot[: image.shape[0], : image.shape[1]] = image
    index, boxes, landmarks = random_faces(rng, shapes, 30)
    corner = np.array(shapes, np.float32)[index][:, ::-1]  # (w, h) of each face's image
    boxes[:10] += np.tile(corner[:10] - boxes[:10, 2:] + 20, 2)  # 20 px over the far edges
    landmarks[:10] += (corner[:10] - boxes[:10, 2:] + 20)[:, None]
    found = np.ones(30, bool)
    found[-3:] = False
    sizes = np.array(shapes, np.int32)
    chips = FaceChips(spec)(padded, index, boxes, landmarks, found, sizes).numpy()
    expected = reference_chips(images, spec, index, boxes, landmarks, found)
    mad = mean_abs(chips, expected)
    assert mad.max() <= MAX_MAD, mad
    if spec.method == "five_point":
        black = expected.max(axis=-1) == 0
        assert black[:10].mean() > 0.05  # the faces do reach past the border
        np.testing.assert_array_equal(chips.max(axis=-1)[black], 0)


@pytest.mark.parametrize("preset", PRESETS)
def test_unusable_faces_get_the_centre_crop(rng, preset):
    """Not found (NaN points, as in a fallback), a box outside its image, coincident
    landmarks: the centre crop, where `crop_face` would raise."""
    spec = get_preset(preset).crop_spec
    image = textured(rng, 180, 240)
    centre = crop_face(image, spec).astype(np.float32)
    boxes = np.array([[np.nan] * 4, [300, 10, 400, 90], [300, 10, 400, 90]], np.float32)
    landmarks = np.stack(
        [np.full((5, 2), np.nan), np.full((5, 2), np.nan), np.full((5, 2), 40.0)]
    ).astype(np.float32)
    found = np.array([False, True, True])
    chips = FaceChips(spec)(image[None], np.zeros(3, np.int32), boxes, landmarks, found).numpy()
    assert np.abs(chips - centre).max() <= 1.0  # PIL's near-ties round either way
    assert mean_abs(chips, np.stack([centre] * 3)).max() <= 0.1


def test_uint8_and_float_images_give_the_same_chips(batch):
    images, index, boxes, landmarks, found = batch
    for preset in PRESETS:
        layer = FaceChips(get_preset(preset).crop_spec)
        as_uint8 = layer(images, index, boxes, landmarks, found).numpy()
        as_float = layer(images.astype(np.float32), index, boxes, landmarks, found).numpy()
        np.testing.assert_array_equal(as_uint8, as_float)


def test_chips_stay_float32_under_a_mixed_precision_policy(batch):
    """Geometry in bfloat16 would move pixels: the layer keeps float32 under any policy."""
    spec = get_preset("facenet").crop_spec
    expected = FaceChips(spec)(*batch).numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = FaceChips(spec)
        chips = layer(batch[0], batch[1], batch[2].astype(np.float32), *batch[3:])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert layer.compute_dtype == "float32" and chips.dtype == tf.float32
    np.testing.assert_array_equal(chips.numpy(), expected)


def test_no_faces_give_no_chips(batch):
    images = batch[0]
    for preset in PRESETS:
        spec = get_preset(preset).crop_spec
        empty = (np.zeros(0, np.int32), np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0, bool))
        chips = FaceChips(spec)(images, *empty)
        assert chips.shape == (0, spec.size, spec.size, 3)


def symbolic_model(layer):
    inputs = [
        keras.Input((None, None, 3), dtype="uint8", name="images"),
        keras.Input((), dtype="int32", name="image_index"),
        keras.Input((4,), name="boxes"),
        keras.Input((5, 2), name="landmarks"),
        keras.Input((), dtype="bool", name="found"),
    ]
    return keras.Model(inputs, layer(*inputs))


@pytest.mark.parametrize("preset", PRESETS)
def test_layer_round_trips_and_runs_in_a_model_under_tf_function(batch, tmp_path, preset):
    spec = get_preset(preset).crop_spec
    layer = FaceChips(spec, name="chips")
    config = layer.get_config()
    clone = FaceChips.from_config(config)
    assert clone.spec == spec and clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is FaceChips and restored.spec == spec
    model = symbolic_model(layer)
    assert model.output_shape == (None, spec.size, spec.size, 3)
    inputs = list(batch)
    eager = layer(*inputs).numpy()
    graph = tf.function(lambda *x: model(list(x)), reduce_retracing=True)
    np.testing.assert_array_equal(graph(*inputs).numpy(), eager)
    fewer = [inputs[0], *(x[:5] for x in inputs[1:])]  # another number of faces: no retrace
    np.testing.assert_array_equal(graph(*fewer).numpy(), eager[:5])
    assert_keras_file_round_trip(model, inputs, tmp_path)


def test_spec_from_a_dict_and_bad_specs():
    spec = get_preset("facenet").crop_spec
    assert FaceChips(spec.as_dict()).spec == spec
    assert FaceChips(CropSpec.create("five_point", template="arcface")).spec.size == 112
    with pytest.raises(TypeError, match="spec must be a CropSpec"):
        FaceChips("facenet")


@pytest.mark.parametrize(
    "position, value, message",
    [
        (0, np.zeros((250, 250, 3), np.uint8), r"images must have shape \(B, H, W, 3\)"),
        (0, np.zeros((1, 250, 250, 4), np.uint8), r"images must have shape \(B, H, W, 3\)"),
        (1, np.zeros((3, 1), np.int32), r"image_index must have shape \(N,\)"),
        (2, np.zeros((3, 5), np.float32), r"boxes must have shape \(N, 4\)"),
        (3, np.zeros((3, 68, 2), np.float32), r"landmarks must have shape \(N, 5, 2\)"),
        (4, np.ones((3, 1), bool), r"found must have shape \(N,\)"),
        (5, np.full((1, 3), 250, np.int32), r"image_sizes must have shape \(B, 2\)"),
    ],
)
def test_wrong_shapes_are_named(position, value, message):
    inputs = [
        np.zeros((1, 250, 250, 3), np.uint8),
        np.zeros(3, np.int32),
        np.zeros((3, 4), np.float32),
        np.zeros((3, 5, 2), np.float32),
        np.zeros(3, bool),
        np.full((1, 2), 250, np.int32),
    ]
    inputs[position] = value
    with pytest.raises(ValueError, match=message):
        FaceChips(get_preset("dlib_resnet").crop_spec)(*inputs)


def test_a_different_number_of_rows_per_face_is_named():
    inputs = [np.zeros((1, 99, 99, 3), np.uint8), np.zeros(3, np.int32), np.zeros((4, 4))]
    with pytest.raises(ValueError, match="need one row per face, got .*'boxes': 4"):
        FaceChips(get_preset("facenet").crop_spec)(*inputs, np.zeros((3, 5, 2)), np.ones(3, bool))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_index": np.array([0, 0, 1], np.int32)}, "image_index past the batch"),
        ({"image_index": np.array([0, -1, 0], np.int32)}, "image_index < 0"),
        ({"found": np.zeros(2, bool)}, "found and image_index need one row per face"),
        ({"boxes": np.zeros((4, 4), np.float32)}, "boxes and image_index need one row"),
        ({"image_sizes": np.array([[251, 250]], np.int32)}, "image_sizes exceed"),
        ({"image_sizes": np.array([[250, 0]], np.int32)}, "an image size is 0"),
        ({"image_sizes": np.array([[250, 250]] * 2, np.int32)}, "one .height, width. row"),
    ],
)
def test_inconsistent_inputs_fail_in_the_graph_with_a_message(change, message):
    """Shapes unknown until run time (a served signature): the graph checks and names them."""
    inputs = {
        "images": np.zeros((1, 250, 250, 3), np.uint8),
        "image_index": np.zeros(3, np.int32),
        "boxes": np.tile(np.float32([[50, 50, 150, 170]]), (3, 1)),
        "landmarks": np.tile(FACE.astype(np.float32) * 100 + 100, (3, 1, 1)),
        "found": np.ones(3, bool),
        "image_sizes": np.array([[250, 250]], np.int32),
    }
    inputs.update(change)
    layer = FaceChips(get_preset("facenet").crop_spec)
    signature = [
        tf.TensorSpec((None,) * value.ndim, tf.as_dtype(value.dtype)) for value in inputs.values()
    ]
    chips = tf.function(lambda *x: layer(*x), input_signature=signature)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        chips(*inputs.values())


@pytest.mark.slow
def test_lfw_chips_match_crop_face():
    """300 LFW photos (seeded sample), MTCNN's chosen face (the centre crop where none is
    found): in-graph chips vs `crop_face` for both presets."""
    from keras_faceset.data.images import load_image

    paths = sorted(require(LFW_DIR / "lfw-deepfunneled").glob("*/*.jpg"))
    chosen = np.random.default_rng(15).choice(len(paths), 300, replace=False)
    images = np.stack([load_image(paths[i]).numpy() for i in sorted(chosen)])
    boxes, landmarks = np.zeros((300, 4), np.float32), np.zeros((300, 5, 2), np.float32)
    found = np.zeros(300, bool)
    for i, faces in enumerate(MtcnnDetector().detect(list(images))):
        if len(faces):
            choice = select_face(faces.boxes, images[i].shape)
            boxes[i], landmarks[i], found[i] = faces.boxes[choice], faces.landmarks[choice], True
    assert found.mean() > 0.95
    for preset in PRESETS:
        spec = get_preset(preset).crop_spec
        layer = tf.function(FaceChips(spec))
        chips = [
            layer(
                images[s : s + 50],
                np.arange(50, dtype=np.int32),
                *(x[s : s + 50] for x in (boxes, landmarks, found)),
            )
            for s in range(0, 300, 50)
        ]
        index = np.arange(300)
        expected = reference_chips(images, spec, index, boxes, landmarks, found)
        mad = mean_abs(np.concatenate(chips), expected)
        print(
            f"\n{preset}: {found.sum()} faces found of 300; |in-graph - crop_face| per chip: "
            f"median {np.median(mad):.3f}, mean {mad.mean():.3f}, max {mad.max():.3f} levels"
        )
        assert mad.max() <= MAX_MAD
