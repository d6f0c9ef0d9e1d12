"""head_sets against the head called on each set alone (no padding at all)."""

import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.models.set_inference import head_sets


@pytest.mark.parametrize("name", ["nan", "qan"])
def test_head_sets_equals_each_set_alone_whatever_the_batching(name):
    head = zoo.load(name, form="head")
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(60, head.dim)).astype(np.float32)
    features = None
    if head.feature_shape is not None:
        features = rng.normal(size=(60, *head.feature_shape)).astype(np.float32)
    lengths = [1, 17, 3, 40, 2, 9, 1]
    rows = [rng.choice(60, size=n, replace=False) for n in lengths]
    embeddings, weights, mask = head_sets(head, frames, rows, features, batch_size=3)
    assert mask.shape == (7, 40) and list(mask.sum(axis=1)) == lengths
    for i, r in enumerate(rows):
        inputs = {"frame_embeddings": frames[r][None], "mask": np.ones((1, len(r)), bool)}
        if features is not None:
            inputs["frame_features"] = features[r][None]
        alone = head(inputs)
        np.testing.assert_allclose(embeddings[i], np.asarray(alone["embedding"])[0], atol=1e-5)
        np.testing.assert_allclose(weights[i, : len(r)], np.asarray(alone["weights"])[0], atol=1e-5)
        assert np.all(weights[i, len(r) :] == 0)
