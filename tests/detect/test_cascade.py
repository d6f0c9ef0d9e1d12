"""The in-graph cascade against the `mtcnn` package (through `MtcnnDetector`, the package path
the project uses), and its own contract: padded batches, max_faces, retry, bad input."""

import numpy as np
import pytest
import tensorflow as tf
from mtcnn.utils.bboxes import iou as package_iou
from mtcnn.utils.bboxes import nms as package_nms

from keras_faceset.align import MtcnnDetector
from keras_faceset.data.images import load_image
from keras_faceset.detect import Mtcnn
from keras_faceset.detect.cascade import (
    CROPS_AT_ONCE,
    PNET_LOGIT_MARGIN,
    _in_chunks,
    _suppress,
)
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples" / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def detector():
    return Mtcnn()


@pytest.fixture(scope="module")
def photos():
    """Colin Powell, Serena Williams (twice): 250x250, one face each."""
    return [load_image(path).numpy() for path in EXAMPLES]


@pytest.fixture(scope="module")
def collage(photos):
    """2x2 collage (500x500) of the three photos and Colin Powell mirrored: four faces."""
    top = np.concatenate([photos[0], photos[1]], axis=1)
    bottom = np.concatenate([photos[2], photos[0][:, ::-1]], axis=1)
    return np.concatenate([top, bottom], axis=0)


def resized(image, height, width):
    return tf.cast(tf.image.resize(image, [height, width], antialias=True), tf.uint8).numpy()


def box_iou(a, b):
    """IoU matrix of boxes a (n, 4) and b (m, 4)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def faces(found, index=0):
    """(boxes, scores, landmarks) of image `index`, its valid slots only."""
    count = int(found["counts"][index])
    return tuple(np.asarray(found[key][index][:count]) for key in ("boxes", "scores", "landmarks"))


def test_fast_nms_equals_the_package_nms(rng):
    for method in ("union", "min"):
        corners = rng.uniform(0, 100, (300, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (300, 2))], axis=1)
        scores = np.sort(rng.uniform(0, 1, 300))[::-1]
        rows = np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float32)
        expected = package_nms(package_iou(rows[:, :4], method=method), 0.5)
        valid = tf.ones([len(rows)], tf.bool)
        kept = rows[_suppress(tf.constant(rows), valid, 0.5, method).numpy()]
        assert 10 < len(kept) < 290
        np.testing.assert_array_equal(kept, rows[expected])


def test_cascade_equals_the_package(detector, photos, collage):
    reference = MtcnnDetector(backend="package")
    images = [*photos, collage, resized(collage, 333, 417)]
    for image, theirs in zip(images, reference.detect(images), strict=True):
        boxes, scores, landmarks = faces(detector.detect(image[None]))
        assert len(scores) == len(theirs) >= 1
        match = np.argmax(box_iou(theirs.boxes, boxes), axis=1)
        assert sorted(match) == list(range(len(scores)))
        np.testing.assert_allclose(boxes[match], theirs.boxes, atol=0.01)
        np.testing.assert_allclose(scores[match], theirs.scores, atol=1e-5)
        np.testing.assert_allclose(landmarks[match], theirs.landmarks, atol=0.01)
    assert len(reference.detect([collage])[0]) == 4


def test_padded_batch_of_mixed_sizes_equals_each_image_alone(detector, photos, collage):
    items = [
        photos[0],
        photos[2][20:220, 30:210],
        collage,
        resized(photos[1], 311, 257),
        np.full((40, 30, 3), 90, np.uint8),
    ]
    height, width = collage.shape[:2]
    batch = np.zeros((len(items), height, width, 3), np.uint8)
    for index, image in enumerate(items):
        batch[index, : image.shape[0], : image.shape[1]] = image
    sizes = np.array([image.shape[:2] for image in items], np.int32)
    together = detector.detect(batch, sizes)
    assert together["counts"].numpy().tolist() == [1, 1, 4, 1, 0]
    for index, image in enumerate(items):
        alone = detector.detect(image[None])
        for key in ("counts", "found", "retried"):
            assert together[key][index] == alone[key][0]
        for key, tolerance in (("boxes", 1e-3), ("scores", 1e-5), ("landmarks", 1e-3)):
            np.testing.assert_allclose(together[key][index], alone[key][0], atol=tolerance)


def test_batch_of_one_size_equals_each_image_alone(detector, photos, collage):
    """A batch of one size goes through P-Net together; each image gets what it gets alone."""
    quarters = np.stack([collage[:250, :250], collage[250:, 250:], *photos])
    together = detector.detect(quarters)
    for index, image in enumerate(quarters):
        alone = detector.detect(image[None])
        assert together["counts"][index] == alone["counts"][0] == 1
        for key in ("boxes", "scores", "landmarks"):
            np.testing.assert_allclose(together[key][index], alone[key][0], atol=1e-4)


def test_chunks_change_nothing(detector, photos, collage):
    """One image per chunk of the cascade (its 24 to 40 crops in one R-Net call, 1 to 3 in one
    O-Net call, a single crop padded to two) finds exactly what one chunk of the whole batch
    finds (its 190 crops in two R-Net calls of 95, its 10 in one O-Net call)."""
    batch = np.stack([collage[:250, :250], collage[250:, 250:], collage[:250, 250:], *photos])
    whole = detector.detect(batch)
    one_by_one = Mtcnn(chunk_pixels=1).detect(batch)
    assert whole["counts"].numpy().tolist() == [1] * 6
    for key in whole:
        np.testing.assert_array_equal(one_by_one[key], whole[key])
    with pytest.raises(ValueError, match="chunk_pixels must be positive"):
        Mtcnn(chunk_pixels=0)


def test_a_crop_gets_the_same_outputs_whatever_its_call(detector, rng):
    """R-Net's and O-Net's outputs of a crop do not depend on how many crops share its call
    (none, one, a few, several calls): each equals its row of one call on all the crops."""
    for network, side in ((detector.rnet, 24), (detector.onet, 48)):
        most = CROPS_AT_ONCE // side**2
        crops = rng.uniform(-1, 1, (2 * most + 3, side, side, 3)).astype(np.float32)
        spec = [tf.TensorSpec([None, side, side, 3], tf.float32)]
        whole = tf.function(lambda c, n=network: n(c, training=False), input_signature=spec)
        chunked = tf.function(lambda c, n=network, s=side: _in_chunks(n, c, s), spec)
        expected = whole(crops)
        for count in (0, 1, 2, 5, most, most + 1, 2 * most + 3):
            for got, want in zip(chunked(crops[:count]), expected, strict=True):
                assert got.shape[0] == count
                np.testing.assert_array_equal(got, want[:count])


def test_faces_are_sorted_by_score_and_padded_with_zeros(detector, collage):
    found = detector.detect(collage[None])
    scores = found["scores"][0].numpy()
    assert found["boxes"].shape == (1, 16, 4) and found["landmarks"].shape == (1, 16, 5, 2)
    assert np.all(np.diff(scores[:4]) <= 0)
    for key in ("boxes", "scores", "landmarks"):
        assert not np.any(found[key][0][4:])


def test_max_faces_keeps_the_largest(detector, photos):
    """An 11x11 grid of photos (121 faces, three of them larger than the others)."""
    tiles = [resized(photos[i % 3], 64, 64) for i in range(121)]
    for index in (7, 50, 93):
        tiles[index] = resized(photos[index % 3], 96, 96)[16:80, 16:80]  # a larger face, cut
    grid = np.concatenate(
        [np.concatenate(tiles[row * 11 : row * 11 + 11], axis=1) for row in range(11)], axis=0
    )
    every = Mtcnn(max_faces=200).detect(grid[None])
    assert int(every["counts"][0]) >= 100
    few = detector.detect(grid[None])
    assert int(few["counts"][0]) == detector.max_faces == 16
    boxes = faces(every)[0]
    largest = np.argsort(-np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))[:16]
    kept, scores, _ = faces(few)
    assert box_iou(kept, boxes[largest]).max(axis=1).min() > 0.999
    assert np.all(np.diff(scores) <= 0)


def test_no_face_gives_zero_count_and_finite_zeros(detector, rng):
    images = np.stack(
        [np.full((120, 160, 3), 128, np.uint8), rng.integers(0, 256, (120, 160, 3), np.uint8)]
    )
    found = detector.detect(images)
    assert found["counts"].numpy().tolist() == [0, 0]
    assert not np.any(found["found"]) and not np.any(found["retried"])
    for key in ("boxes", "scores", "landmarks"):
        assert np.all(np.asarray(found[key]) == 0)


def test_a_face_filling_the_frame_is_found_with_the_retry(detector, photos):
    image = photos[1]
    x1, y1, x2, y2 = faces(detector.detect(image[None]))[0][0]
    w, h = x2 - x1, y2 - y1
    crop = image[int(y1 + 0.1 * h) : int(y2 - 0.1 * h), int(x1 + 0.1 * w) : int(x2 - 0.1 * w)]
    without = Mtcnn(retry_padding=0)
    assert int(without.detect(crop[None])["counts"][0]) == 0
    found = detector.detect(crop[None])
    assert bool(found["found"][0]) and bool(found["retried"][0])
    pad = round(0.25 * max(crop.shape[:2]))
    grey = np.pad(crop, [(pad, pad), (pad, pad), (0, 0)], constant_values=127)
    boxes, scores, landmarks = faces(without.detect(grey[None]))
    np.testing.assert_allclose(faces(found)[0], boxes - pad, atol=1e-3)
    np.testing.assert_allclose(faces(found)[1], scores, atol=1e-6)
    np.testing.assert_allclose(faces(found)[2], landmarks - pad, atol=1e-3)


def test_gray_and_rgba_images_are_handled(detector, photos):
    gray = np.asarray(tf.image.rgb_to_grayscale(photos[0]))
    rgb = np.repeat(gray, 3, axis=-1)
    expected = detector.detect(rgb[None])
    np.testing.assert_array_equal(detector.detect(gray[None])["boxes"], expected["boxes"])
    rgba = np.concatenate([photos[0], np.zeros_like(photos[0][..., :1])], axis=-1)
    np.testing.assert_array_equal(
        detector.detect(rgba[None])["boxes"], detector.detect(photos[0][None])["boxes"]
    )


def test_tiny_and_empty_images_have_no_face(detector):
    for shape in [(1, 0, 0, 3), (1, 1, 1, 3), (2, 19, 300, 3), (0, 50, 50, 3)]:
        found = detector.detect(np.full(shape, 100, np.uint8))
        assert found["boxes"].shape == (shape[0], 16, 4)
        assert not np.any(found["counts"])
    found = detector.detect(np.full((2, 64, 64, 3), 100, np.uint8), [[0, 0], [64, 0]])
    assert found["counts"].numpy().tolist() == [0, 0]


def test_bad_input_raises_naming_the_problem(detector, photos):
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(photos[0][None].astype(np.float32))
    with pytest.raises(ValueError, match="add a batch axis"):
        detector.detect(photos[0])
    with pytest.raises(ValueError, match="RGB"):
        detector.detect(photos[0][None, :, :, :2])
    with pytest.raises(ValueError, match="sizes must be \\(B, 2\\)"):
        detector.detect(photos[0][None], [250, 250])
    with pytest.raises(tf.errors.InvalidArgumentError, match="sizes must not exceed"):
        detector.detect(photos[0][None], [[251, 250]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="one \\(h, w\\) row per image"):
        detector.detect(photos[0][None], [[250, 250], [250, 250]])


def test_one_graph_for_every_batch_and_image_size(detector, photos):
    for shape in [(1, 250, 250), (3, 250, 250), (2, 137, 301)]:
        detector.detect(resized(np.stack(photos)[: shape[0]], *shape[1:]))
    assert detector.detect_graph.experimental_get_tracing_count() == 1
    outputs = detector.detect_graph.get_concrete_function().structured_outputs
    assert outputs["boxes"].shape.as_list() == [None, 16, 4]  # static, as FaceChips needs
    assert outputs["landmarks"].shape.as_list() == [None, 16, 5, 2]


def test_saved_model_serves_the_same_detections(detector, collage, tmp_path):
    tf.saved_model.save(detector, str(tmp_path), signatures={"detect": detector.detect_graph})
    served = tf.saved_model.load(str(tmp_path)).signatures["detect"]
    got = served(images=tf.constant(collage[None]), sizes=tf.constant([[500, 500]]))
    expected = detector.detect(collage[None])
    assert int(got["counts"][0]) == 4
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def keras_prelu_networks(detector: Mtcnn) -> Mtcnn:
    """`detector` with its networks rebuilt on `keras.layers.PReLU` (the same weights): the
    arithmetic before the faster PReLU forms, to hold the detections to bit for bit."""
    import keras

    from keras_faceset.detect.networks import PReLU

    def clone(layer):
        kind = keras.layers.PReLU if isinstance(layer, PReLU) else type(layer)
        return kind.from_config(layer.get_config())

    for name in ("pnet", "rnet", "onet"):
        network = getattr(detector, name)
        copy = keras.models.clone_model(network, clone_function=clone)
        copy.set_weights(network.get_weights())
        assert not any(isinstance(layer, PReLU) for layer in copy.layers)
        setattr(detector, name, copy)
    return detector


@pytest.mark.parametrize("thresholds", [(0.6, 0.7, 0.7), (0.0, 0.7, 0.7), (0.95, 0.5, 0.5)])
def test_detections_equal_those_of_the_plain_networks_bit_for_bit(
    thresholds, detector, photos, collage
):
    """The faster PReLU forms and P-Net's head on the candidate cells only change no bit of
    any output (boxes, scores, landmarks, counts) against Keras's PReLU and P-Net's softmax and
    regression on every cell, on one size batched, one image alone and a padded batch of
    mixed sizes; P-Net's threshold 0 makes every cell a candidate."""
    if thresholds != detector.thresholds:
        detector = Mtcnn(thresholds=thresholds)
    reference = keras_prelu_networks(Mtcnn(thresholds=thresholds))
    reference.pnet_on_candidates = False
    quarters = np.stack([collage[:250, :250], collage[250:, 250:], *photos])
    mixed = np.zeros((2, 500, 500, 3), np.uint8)
    mixed[0], mixed[1, :250, :250] = collage, photos[1]
    for images, sizes in (
        (quarters, None),
        (collage[None], None),
        (mixed, [[500, 500], [250, 250]]),
    ):
        ours, theirs = detector.detect(images, sizes), reference.detect(images, sizes)
        assert int(np.sum(theirs["counts"])) >= len(images)
        for key in theirs:
            np.testing.assert_array_equal(ours[key], theirs[key])


def test_pnet_cells_are_exact_above_the_threshold(detector, photos, collage):
    """`_pnet_cells` against P-Net on every cell: the same probability and regression bit for
    bit on every cell above the threshold, none missing (every cell of a level, with a
    threshold that leaves one candidate: a row repeated for the product, and none)."""
    x = (tf.cast(np.stack([collage[:250, :250], *photos]), tf.float32) - 127.5) / 128.0
    level = tf.image.resize(x, [75, 75], method="area")
    regression, probability = (np.asarray(t) for t in detector.pnet(level, training=False))
    probability = probability[..., 1]
    logits = np.log(probability) - np.log1p(-probability)  # l1 - l0, to place thresholds
    top = np.sort(logits.ravel())[::-1]
    between = (top[0] + top[1]) / 2 + PNET_LOGIT_MARGIN  # the bound lands between the top two
    for threshold, candidates in ((0.6, None), (float(1 / (1 + np.exp(-between))), 1), (1.0, 0)):
        ours = Mtcnn(thresholds=(threshold, 0.7, 0.7))
        got = [np.asarray(t) for t in tf.function(ours._pnet_cells)(level)]
        above = probability > np.float32(threshold)
        assert np.array_equal(got[1] > np.float32(threshold), above)
        np.testing.assert_array_equal(got[1][above], probability[above])
        np.testing.assert_array_equal(got[0][above], regression[above])
        if candidates is not None:
            assert np.count_nonzero(got[1]) == candidates
        else:
            assert 10 < above.sum() < np.count_nonzero(got[1]) < probability.size / 4
