"""FaceEmbedder on sets: set embeddings equal the set model, weights sum to 1, inputs."""

import cv2
import keras
import numpy as np
import pytest

from keras_faceset.data.inputs import frame_label, input_sets, set_inputs
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.models.backbones.dlib_resnet import Affine
from tests.align.test_pipeline import ONE_FACE, FakeDetector
from tests.conftest import REPO

IMAGES = sorted((REPO / "examples" / "images").glob("*.jpg"))  # Powell, Serena 1, Serena 2


@pytest.fixture(scope="module")
def qan():
    return FaceEmbedder("qan", weights=None, align="center")  # random weights: no download


def test_embed_sets_equal_the_set_model_and_weights_sum_to_one(qan):
    sets = [IMAGES, IMAGES[1:2]]
    embeddings, weights = qan.embed_sets(sets)
    assert embeddings.shape == (2, 128) and [len(w) for w in weights] == [3, 1]
    np.testing.assert_allclose([w.sum() for w in weights], 1, atol=1e-6)
    chips = qan.chips(IMAGES).astype("float32")
    out = qan.task.predict({"images": chips[None], "mask": np.ones((1, 3), bool)}, verbose=0)
    np.testing.assert_allclose(embeddings[0], out["embedding"][0], atol=1e-5)
    np.testing.assert_allclose(weights[0], out["weights"][0], atol=1e-6)
    single, weight = qan.embed_set(IMAGES[1:2])
    np.testing.assert_allclose(single, embeddings[1], atol=1e-6)
    np.testing.assert_allclose(qan.embed_images(IMAGES[1:2])[0], single, atol=1e-6)


def test_frames_embedded_in_chunks_equal_all_at_once(qan, monkeypatch):
    from keras_faceset import embedder as module

    sets, calls = [IMAGES * 2, IMAGES[1:2]], []
    frames = [frame for frames in sets for frame in frames]
    outputs = qan.frame_outputs(qan.chips(frames))  # all 7 frames at once
    at_once = qan.set_embeddings(outputs, [list(range(6)), [6]])
    frame_outputs = qan.frame_outputs

    def counted(chips):
        calls.append(len(chips))
        return frame_outputs(chips)

    monkeypatch.setattr(module, "CHUNK", 3)
    monkeypatch.setattr(qan, "batch_size", 2)  # chunks of 4 frames: whole batches
    monkeypatch.setattr(qan, "frame_outputs", counted)
    embeddings, weights = qan.embed_sets(sets)
    np.testing.assert_allclose(embeddings, at_once[0], atol=1e-6)
    np.testing.assert_allclose(weights[0], at_once[1][0, :6], atol=1e-6)
    raw = outputs["frame_embeddings"]
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(qan.embed(frames), unit, atol=1e-6)
    assert calls == [4, 3, 4, 3]
    monkeypatch.setattr(qan, "align", "preset")  # the faces of every chunk, in order
    monkeypatch.setattr(qan, "detector", FakeDetector(ONE_FACE))
    _, _, faces = qan.embed_sets(sets, return_faces=True)
    expected = qan.align_faces(frames)
    assert faces.names == expected.names
    np.testing.assert_array_equal(faces.boxes, expected.boxes)
    np.testing.assert_array_equal(faces.chips, expected.chips)


def test_an_image_model_embeds_a_set_as_its_normalised_mean():
    embedder = FaceEmbedder("dlib_resnet", weights=None, align="center")
    frames = embedder.embed(IMAGES)
    embeddings, weights = embedder.embed_sets([IMAGES])
    mean = frames.mean(axis=0)
    np.testing.assert_allclose(embeddings[0], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(weights[0], [1 / 3] * 3)
    np.testing.assert_allclose(embedder.embed_images(IMAGES), frames, atol=1e-6)


def test_chips_like_crop_where_the_other_image_had_its_face():
    embedder = FaceEmbedder("dlib_resnet", weights=None)
    aligned = embedder.align_faces(IMAGES)
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in IMAGES]
    np.testing.assert_array_equal(embedder.chips(images, like=aligned), aligned.chips)
    picked = aligned.take([2, 0])
    assert picked.names == [aligned.names[2], aligned.names[0]]
    np.testing.assert_array_equal(embedder.chips(images[::2][::-1], like=picked), picked.chips)
    with pytest.raises(ValueError, match="2 images but 3 alignments"):
        embedder.chips(images[:2], like=aligned)


def test_flip_is_for_image_presets():
    with pytest.raises(ValueError, match="--flip applies to image presets"):
        FaceEmbedder("nan", weights=None, flip=True)


def test_input_sets_folders_videos_and_images(tmp_path):
    frames = tmp_path / "set"
    frames.mkdir()
    for index in (2, 1):
        (frames / f"{index}.jpg").write_bytes(IMAGES[index].read_bytes())
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (250, 250))
    for index in range(10):
        writer.write(cv2.imread(str(IMAGES[index % 3])))
    writer.release()
    sets = input_sets([frames, video, IMAGES[0]], max_frames=4)
    assert [name for name, _ in sets] == [str(frames), str(video), str(IMAGES[0])]
    assert sets[0][1] == [str(frames / "1.jpg"), str(frames / "2.jpg")]
    assert sets[1][1] == [(str(video), i) for i in (1, 3, 6, 8)]
    assert sets[2][1] == [str(IMAGES[0])]
    assert frame_label(sets[1][1][0]) == f"{video}#1"
    decoded = set_inputs(sets[1][1])
    assert len(decoded) == 4 and decoded[0].shape == (250, 250, 3)
    assert set_inputs(sets[0][1]) == sets[0][1]  # paths stay paths (chip cache keys files)
    with pytest.raises(FileNotFoundError, match="nope"):
        input_sets([tmp_path / "nope.jpg"])


def test_bfloat16_precision_keeps_the_embeddings_and_rejects_unknown_names():
    exact = FaceEmbedder("nan", align="center")
    fast = FaceEmbedder("nan", align="center", precision="bfloat16")
    frames, fast_frames = exact.embed(IMAGES), fast.embed(IMAGES)
    assert fast_frames.dtype == np.float32
    assert np.min(np.sum(frames * fast_frames, axis=1)) > 0.9999  # cosine, unit rows
    (embedding,), _ = exact.embed_sets([IMAGES])
    (fast_embedding,), _ = fast.embed_sets([IMAGES])
    assert float(embedding @ fast_embedding) > 0.9999
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        FaceEmbedder("dlib_resnet", weights=None, precision="float16")


def test_the_folded_default_equals_the_unfolded_graph_on_real_faces():
    folded, unfolded = FaceEmbedder("nan"), FaceEmbedder("nan", fold=False)
    assert _batch_norms(unfolded.frame_model) > 0 and _batch_norms(folded.frame_model) == 0
    chips = folded.chips(IMAGES)
    fast, exact = folded.frame_outputs(chips), unfolded.frame_outputs(chips)
    for key in ("frame_embeddings", "frame_features"):
        np.testing.assert_allclose(fast[key], exact[key], atol=1e-4)
    (a,), _ = folded.embed_sets([IMAGES])
    (b,), _ = unfolded.embed_sets([IMAGES])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_faces_are_reported_per_frame():
    embedder = FaceEmbedder("dlib_resnet", weights=None)
    grey = np.full((200, 200, 3), 128, np.uint8)
    _, _, faces = embedder.embed_sets([[IMAGES[0], grey]], return_faces=True)
    np.testing.assert_array_equal(faces.fallback, [False, True])
    np.testing.assert_array_equal(faces.face_count, [1, 0])
    assert faces.confidence[0] > 0.9 and faces.confidence[1] == 0
    assert (
        FaceEmbedder("dlib_resnet", weights=None, align="center").embed_sets(
            [[grey]], return_faces=True
        )[2]
        is None
    )


def _batch_norms(model) -> int:
    layers = model._flatten_layers(include_self=False, recursive=True)
    return sum(isinstance(layer, (keras.layers.BatchNormalization, Affine)) for layer in layers)


def test_the_detector_is_part_of_the_cache_keys():
    """Embeddings of the in-graph detector and of the mtcnn package are cached apart (they
    agree face for face, but a cache must never mix two pipelines)."""
    graph, package = FaceEmbedder("dlib_resnet"), FaceEmbedder("dlib_resnet", detector="package")
    assert graph.frame_key != package.frame_key and graph.__name__ != package.__name__
    assert "detector graph" in graph.frame_key and "package detector" in package.__name__
    center = FaceEmbedder("dlib_resnet", align="center")
    assert "detector" not in center.frame_key  # nothing is detected
    with pytest.raises(ValueError, match="unknown detector backend"):
        FaceEmbedder("dlib_resnet", detector="hog")
