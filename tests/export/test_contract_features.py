"""The serving contract of a set head that reads backbone features and projects the frames
(a tiny QAN: quality from the pooled feature map, `projection_dim`), against the in-process
Keras model: fresh-process parity (eager and TF1 graph mode), cached galleries through
`embed_images` -> `aggregate`, warm-up replay, `saved_model_cli`, standard ops only."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.models import QAN, QANHead
from tests.export.helpers import SetModelContract, encode, nonstandard_ops
from tests.models.set_helpers import DIM, IMAGE_SIZE, TinyBackbone, randomize

ATOL = 1e-5
FEATURES, PROJECTION = 12, 8  # TinyBackbone's feature map has 12 channels


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    head = QANHead(DIM, feature_shape=FEATURES, filters=4, projection_dim=PROJECTION)
    model = QAN(TinyBackbone(), randomize(head, rng, 0.5))
    sets = rng.integers(0, 256, (2, 3, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    images = rng.integers(0, 256, (2, 45, 37, 3), dtype=np.uint8)
    jpegs = [encode(image, "jpeg") for image in images]
    contract = SetModelContract(
        model,
        "tiny_qan",
        (IMAGE_SIZE, IMAGE_SIZE),
        tmp_path_factory.mktemp("models"),
        tmp_path_factory.mktemp("fresh"),
        sets,
        mask,
        images,
        jpegs,
    )
    yield contract
    contract.close()


def test_frame_features_are_the_embedding_then_the_pooled_features(contract):
    assert contract.frame_dim == DIM + FEATURES
    frames = contract.sets.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3).astype("float32")
    out = contract.reference.model.backbone.feature_extractor()(frames)
    pooled = keras.ops.convert_to_numpy(out["feature_map"]).mean(axis=(1, 2))  # by hand
    expected = np.concatenate([keras.ops.convert_to_numpy(out["embedding"]), pooled], axis=-1)
    served = contract.results["tf2|frames|frame_features"]
    np.testing.assert_allclose(served, expected, atol=ATOL, rtol=0)
    embedding = contract.expected["frames"]["embedding"]
    assert embedding.shape == (6, PROJECTION)
    weights = contract.expected["sets"]["weights"]
    assert weights[0, 2] == 0 and np.ptp(weights[1]) > 1e-3  # quality differs per frame


def test_every_signature_matches_keras_in_a_fresh_process(contract):
    assert contract.check_parity(ATOL) <= ATOL


def test_a_cached_gallery_aggregates_to_the_served_set_embedding(contract):
    contract.check_cached_gallery(ATOL)


def test_warmup_records_run_through_the_loaded_model(contract):
    contract.check_warmup()


def test_saved_model_cli_lists_the_documented_signatures(contract):
    contract.check_cli()


def test_every_op_is_a_standard_tensorflow_kernel(contract):
    assert not nonstandard_ops(contract.model_dir)


def test_aggregate_refuses_bare_embeddings_without_the_frame_features(contract):
    """An old client sending `[B, T, D]` embeddings to a head that also needs frame features
    gets INVALID_ARGUMENT naming the expected `[?, ?, F]` shape."""
    loaded = tf.saved_model.load(str(contract.model_dir))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=rf"expected shape \[\?,\?,{DIM + FEATURES}\]"
    ):
        loaded.signatures["aggregate"](embeddings=tf.zeros((1, 2, DIM)), mask=tf.ones((1, 2), bool))
