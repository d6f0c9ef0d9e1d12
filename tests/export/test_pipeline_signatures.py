"""The photo signatures of a zoo preset's export (`detect`, `embed_faces`, `embed_set`) with the
real dlib_resnet preset (weights from the face_recognition_models package): encoded photos of
several sizes answer as the in-process `FacePipeline` answers each photo alone (within 1e-4),
and as today's `mtcnn`-package path (`FaceEmbedder`) within a cosine of 0.999; bad bytes fail
naming the input; standard ops only; warm-up records that run the detector; TF Serving's REST
handling emulated. The slow test loads the export in a fresh TensorFlow-only process, both
ways (eager and TF1 graph mode by the SignatureDef) and replays the warm-up."""

import base64
import io
import json
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

from keras_faceset.data.images import load_image
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.export import ExportSpec
from keras_faceset.export.client import parse_rest_response
from keras_faceset.export.pipeline import (
    NOT_AN_IMAGE,
    PIPELINE_SIGNATURES,
    load_pipeline,
    preset_crop,
)
from keras_faceset.export.warmup import WARMUP_FILE
from tests.conftest import REPO
from tests.export.helpers import (
    fresh_results,
    l2,
    nonstandard_ops,
    op_types,
    rest_server,
    start_fresh_process,
    tiny_backbone,
)

PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))  # LFW 250 x 250, one face each
FACES = 16  # max_faces of the export
PER_FACE = ("boxes", "scores", "landmarks", "embedding")
ATOL = {"boxes": 1e-3, "landmarks": 1e-3, "scores": 1e-5, "embedding": 1e-4}
"""Pixel coordinates near 500 carry float32 rounding of ~1e-4 px; embeddings must agree 1e-4."""


def png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def exported(dlib_export):
    _, model_dir, loaded = dlib_export
    return model_dir, loaded


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline("dlib_resnet")  # folded, as the export


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder("dlib_resnet", detector="package")  # today's path: the mtcnn package


@pytest.fixture(scope="module")
def photos():
    """(name, encoded bytes, decoded uint8 image): the three JPEGs, a 2x2 collage (500 x 500,
    four faces) and a grey image (120 x 90, no face) as PNGs."""
    images = [load_image(path).numpy() for path in PHOTOS]
    top = np.concatenate([images[0], images[1]], axis=1)
    bottom = np.concatenate([images[2], images[0][:, ::-1]], axis=1)
    collage = np.concatenate([top, bottom], axis=0)
    grey = np.full((120, 90, 3), 128, np.uint8)
    items = [(p.name, p.read_bytes(), image) for p, image in zip(PHOTOS, images, strict=True)]
    return [*items, ("collage", png(collage), collage), ("grey", png(grey), grey)]


@pytest.fixture(scope="module")
def served_faces(exported, photos):
    _, loaded = exported
    out = loaded.signatures["embed_faces"](image_bytes=[data for _, data, _ in photos])
    return {key: value.numpy() for key, value in out.items()}


def alone(pipeline, image):
    """The in-process pipeline on one photo: its per-face outputs, named as served."""
    out = pipeline.faces(image[None], [image.shape[:2]])
    names = {"boxes": "boxes", "scores": "scores", "landmarks": "landmarks"}
    faces = {name: out[key].numpy() for key, name in names.items()}
    return {**faces, "embedding": out["embeddings"].numpy()}


def test_embed_faces_equals_the_in_process_pipeline_on_each_photo_alone(
    served_faces, photos, pipeline
):
    assert served_faces["counts"].tolist() == [1, 1, 1, 4, 0]
    assert served_faces["embedding"].shape == (5, FACES, 128)
    assert served_faces["frame_features"].shape == (5, FACES, 128)
    for i, (name, _, image) in enumerate(photos):
        count, expected = served_faces["counts"][i], alone(pipeline, image)
        for key in PER_FACE:
            got = served_faces[key][i]
            np.testing.assert_allclose(got[:count], expected[key], atol=ATOL[key], err_msg=name)
            assert not np.any(got[count:]), (name, key)  # padded slots are zeros
    # the embeddings are the unit raw frame embeddings that `aggregate` takes
    collage = served_faces["frame_features"][3, :4]
    np.testing.assert_allclose(l2(collage), served_faces["embedding"][3, :4], atol=1e-6)


def test_detect_gives_the_boxes_of_embed_faces(exported, photos, served_faces):
    _, loaded = exported
    found = loaded.signatures["detect"](image_bytes=[data for _, data, _ in photos])
    assert set(found) == {"boxes", "scores", "landmarks", "counts"}
    assert found["counts"].dtype == tf.int32 and found["boxes"].shape == (5, FACES, 4)
    for key in ("boxes", "scores", "landmarks", "counts"):
        np.testing.assert_array_equal(found[key], served_faces[key], err_msg=key)


def test_embed_faces_matches_the_mtcnn_package_path(served_faces, photos, embedder):
    expected = embedder.embed(PHOTOS)  # mtcnn package, crop_face, the Keras backbone
    photo_cosine = np.sum(served_faces["embedding"][:3, 0] * expected, axis=-1)
    assert np.all(photo_cosine >= 0.999), photo_cosine
    collage = photos[3][2]
    found = embedder.find_faces([collage])  # every face of the collage
    theirs = embedder.frame_outputs(found.chips)["frame_embeddings"]
    theirs /= np.linalg.norm(theirs, axis=-1, keepdims=True)
    cosine = theirs @ served_faces["embedding"][3, :4].T
    match = np.argmax(cosine, axis=1)
    assert len(found) == 4 and sorted(match) == [0, 1, 2, 3]
    assert np.all(cosine[np.arange(4), match] >= 0.999), cosine
    np.testing.assert_allclose(served_faces["boxes"][3][match], found.boxes, atol=0.05)
    cosines = {"photos": photo_cosine.tolist(), "collage": cosine[np.arange(4), match].tolist()}
    print(json.dumps({"served vs the mtcnn package path, cosines": cosines}))


def test_embed_set_is_the_head_on_each_frames_chosen_face(exported, photos, pipeline, embedder):
    _, loaded = exported
    jpegs = [data for _, data, _ in photos[:3]]
    frames = [[*jpegs, photos[4][1]], [jpegs[1], b"", b"", b""], [b""] * 4]
    served = {k: v.numpy() for k, v in loaded.signatures["embed_set"](image_bytes=frames).items()}
    assert served["counts"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    images = [image for _, _, image in photos[:3]]
    whole = pipeline(np.stack(images))  # the three photos as one set, in process
    np.testing.assert_allclose(served["embedding"][1], whole["embeddings"][1], atol=1e-4)
    np.testing.assert_allclose(served["weights"][1], [1, 0, 0, 0])
    np.testing.assert_array_equal(served["embedding"][2], 0.0)  # no frame at all
    np.testing.assert_array_equal(served["weights"][2], 0.0)
    np.testing.assert_allclose(served["weights"][0], [0.25] * 4, atol=1e-6)
    np.testing.assert_allclose(served["boxes"][0, :3], whole["boxes"], atol=1e-3)
    np.testing.assert_array_equal(served["boxes"][0, 3], 0.0)  # the grey frame's centre crop
    three = loaded.signatures["embed_set"](image_bytes=[jpegs])
    np.testing.assert_allclose(three["embedding"][0], whole["set_embedding"], atol=1e-4)
    theirs, _ = embedder.embed_set([str(p) for p in PHOTOS])
    assert float(three["embedding"][0].numpy() @ theirs) >= 0.999


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.slow
def test_other_image_kinds_decode_and_empty_batches_answer(exported):
    _, loaded = exported
    photo = Image.open(PHOTOS[0])
    wide = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    kinds = [
        _encoded(photo.convert("L"), "PNG"),
        _encoded(photo.convert("RGBA"), "PNG"),
        _encoded(photo.convert("CMYK"), "JPEG"),
        _encoded(Image.fromarray(wide), "PNG"),  # 16 bits per sample
        _encoded(photo, "BMP"),
        _encoded(photo, "GIF"),
        _encoded(Image.new("RGB", (1, 1)), "PNG"),
    ]
    out = loaded.signatures["embed_faces"](image_bytes=kinds)
    assert out["counts"].numpy().tolist() == [1, 1, 1, 1, 1, 1, 0]
    assert all(np.all(np.isfinite(value.numpy())) for value in out.values())
    empty = loaded.signatures["embed_faces"](image_bytes=tf.constant([], tf.string))
    assert empty["embedding"].shape == (0, FACES, 128)
    no_sets = loaded.signatures["embed_set"](image_bytes=tf.zeros([0, 3], tf.string))
    assert no_sets["embedding"].shape == (0, 128)


BAD_BYTES = {  # signature, inputs given a JPEG and a PNG photo, message
    "not an image": (
        "detect",
        lambda jpeg, _: [jpeg, b"plain text"],
        f"image_bytes[1] {NOT_AN_IMAGE}",
    ),
    "empty": ("embed_faces", lambda *_: [b""], f"image_bytes[0] {NOT_AN_IMAGE}"),
    "truncated JPEG": ("detect", lambda jpeg, _: [jpeg, jpeg[:3000]], "Invalid JPEG data"),
    "truncated PNG": ("embed_faces", lambda _, png: [png[:5000]], "Invalid PNG data"),
    "a frame of a set": (
        "embed_set",
        lambda jpeg, _: [[jpeg, b""], [b"", b"<html>"]],
        f"image_bytes[1, 1] {NOT_AN_IMAGE}",
    ),
}


FAST_BAD_BYTES = ("not an image", "truncated JPEG")
"""The cases the default suite runs; the others (one trace of another signature each) are slow."""


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, id=name, marks=() if name in FAST_BAD_BYTES else pytest.mark.slow)
        for name in BAD_BYTES
    ],
)
def test_bad_bytes_fail_with_invalid_argument(exported, photos, case):
    _, loaded = exported
    signature, inputs, message = BAD_BYTES[case]
    inputs = inputs(photos[0][1], photos[3][1])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        loaded.signatures[signature](image_bytes=inputs)
    assert message in error.value.message
    # the model still answers the next request
    assert loaded.signatures["detect"](image_bytes=[photos[0][1]])["counts"].numpy()[0] == 1


def test_the_signatures_are_as_documented(exported):
    model_dir, _ = exported
    saved = saved_model_pb2.SavedModel.FromString((model_dir / "saved_model.pb").read_bytes())
    signatures = saved.meta_graphs[0].signature_def

    def listed(name):
        def spec(info):
            shape = tuple(d.size for d in info.tensor_shape.dim)
            return tf.dtypes.as_dtype(info.dtype).name, shape

        signature = signatures[name]
        return {k: spec(v) for k, v in signature.inputs.items()}, {
            k: spec(v) for k, v in signature.outputs.items()
        }

    faces = {
        "boxes": ("float32", (-1, FACES, 4)),
        "scores": ("float32", (-1, FACES)),
        "landmarks": ("float32", (-1, FACES, 5, 2)),
        "counts": ("int32", (-1,)),
    }
    photos = {"image_bytes": ("string", (-1,))}
    assert listed("detect") == (photos, faces)
    embedded = {
        "embedding": ("float32", (-1, FACES, 128)),
        "frame_features": ("float32", (-1, FACES, 128)),
    }
    assert listed("embed_faces") == (photos, {**faces, **embedded})
    assert listed("embed_set") == (
        {"image_bytes": ("string", (-1, -1))},
        {
            "embedding": ("float32", (-1, 128)),
            "weights": ("float32", (-1, -1)),
            "boxes": ("float32", (-1, -1, 4)),
            "counts": ("int32", (-1, -1)),
        },
    )
    docs = (REPO / "docs" / "serving.md").read_text()
    for name in PIPELINE_SIGNATURES:
        assert f"`{name}`" in docs
        for key in {**listed(name)[0], **listed(name)[1]}:
            assert f"`{key}`" in docs, key


def test_every_op_is_a_standard_kernel_and_the_pipeline_is_in_the_graph(exported):
    model_dir, _ = exported
    assert not nonstandard_ops(model_dir)
    ops, _ = op_types(model_dir)
    assert {"DecodeJpeg", "CropAndResize", "ImageProjectiveTransformV3", "Conv2D"} <= ops
    assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & ops


@pytest.mark.slow
def test_warmup_records_run_the_detector_on_faces(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    model_dir, loaded = exported
    records = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        for record in tf.data.TFRecordDataset(str(model_dir / WARMUP_FILE))
    ]
    names = [request.model_spec.signature_name for request in records]
    assert names[4:] == list(PIPELINE_SIGNATURES) and len(names) == 7
    for request in records[4:]:
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        counts = loaded.signatures[request.model_spec.signature_name](**inputs)["counts"].numpy()
        assert counts.flat[0] == 2, request.model_spec.signature_name  # both drawn faces found


def test_rest_request_with_base64_photos(exported, served_faces):
    """The docs' REST body: photo bytes as {"b64": ...}, columnar, through TF Serving's
    handling (emulated), gives the served embeddings of every face."""
    _, loaded = exported
    body = {
        "signature_name": "embed_faces",
        "inputs": {
            "image_bytes": [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in PHOTOS]
        },
    }
    with rest_server({"dlib_resnet": loaded}) as url:
        request = urllib.request.Request(
            f"{url}/v1/models/dlib_resnet:predict", json.dumps(body).encode()
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            out = parse_rest_response(json.loads(answer.read()))
    assert out["counts"].tolist() == [1, 1, 1]
    np.testing.assert_allclose(out["embedding"], served_faces["embedding"][:3], atol=1e-4)


def test_only_a_preset_export_gets_the_pipeline():
    assert preset_crop(ExportSpec.from_model(tiny_backbone(), "tiny")) is None
    assert preset_crop(ExportSpec.from_model(tiny_backbone(), "dlib_resnet")) is None  # 32 px
    assert preset_crop(ExportSpec.from_model(tiny_backbone(size=150), "dlib_resnet")).size == 150


@pytest.mark.slow
def test_a_fresh_tensorflow_only_process_serves_what_the_pipeline_gives(
    exported, photos, pipeline, tmp_path
):
    """Both loaders (`tf.saved_model.load`; TF1 graph mode by the SignatureDef's tensor names,
    TF Serving's path), never importing keras_faceset, and the warm-up replayed."""
    model_dir, _ = exported
    encoded = np.array([data for _, data, _ in photos], object)
    calls = {
        "detect": ("detect", {"image_bytes": encoded}),
        "faces": ("embed_faces", {"image_bytes": encoded}),
        "set": ("embed_set", {"image_bytes": encoded[None, :3]}),
    }
    results = fresh_results(start_fresh_process(model_dir, calls, tmp_path), tmp_path)
    assert "keras_faceset" not in set(results["modules"])
    whole = pipeline(np.stack([image for _, _, image in photos[:3]]))
    worst = 0.0
    for loader in ("tf2", "v1"):
        for i, (name, _, image) in enumerate(photos):
            expected = alone(pipeline, image)
            count = len(expected["scores"])
            assert results[f"{loader}|detect|counts"][i] == count
            for key in PER_FACE:
                got = results[f"{loader}|faces|{key}"][i, :count]
                np.testing.assert_allclose(got, expected[key], atol=ATOL[key], err_msg=name)
                if key == "embedding":
                    worst = max(worst, float(np.max(np.abs(got - expected[key]), initial=0)))
            np.testing.assert_array_equal(
                results[f"{loader}|detect|boxes"][i], results[f"{loader}|faces|boxes"][i]
            )
        got = results[f"{loader}|set|embedding"][0]
        np.testing.assert_allclose(got, whole["set_embedding"], atol=1e-4)
    signatures = [str(results[f"warmup|{i}|signature"]) for i in range(7)]
    assert signatures[4:] == list(PIPELINE_SIGNATURES)
    assert results["warmup|5|counts"].tolist() == [2]
    print(json.dumps({"fresh process max |served - in-process| embedding": worst}))
