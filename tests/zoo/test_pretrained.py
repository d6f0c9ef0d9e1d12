"""The zoo with the real original files from ../shared (slow)."""

import keras
import numpy as np
import pytest

from keras_faceset import layers, losses, zoo
from keras_faceset.data import LFW, center_crop_resize, load_image
from keras_faceset.models.convert import convert_dlib_dat, convert_facenet_h5
from tests.checks import assert_keras_file_round_trip
from tests.conftest import DLIB_DAT, LFW_DIR, require

pytestmark = pytest.mark.slow


def _lfw_batch(num_people, per_person, size):
    """`per_person` centre-cropped images of each of the first `num_people` DevTrain identities
    that have that many."""
    images = LFW(require(LFW_DIR)).images("dev_train")
    counts = images.identity.value_counts(sort=False)
    names = counts[counts >= per_person].index[:num_people]
    rows = images[images.identity.isin(names)].groupby("identity").head(per_person)
    images = [center_crop_resize(load_image(p), 120, size) for p in rows.path]
    labels = rows.identity.astype("category").cat.codes.to_numpy()
    return np.stack(images).astype("float32"), labels


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_dlib_resnet_loads_converts_caches_and_round_trips(monkeypatch, empty_cache, tmp_path):
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(require(DLIB_DAT).parent))
    images, _ = _lfw_batch(2, 2, 150)
    expected = convert_dlib_dat(DLIB_DAT).predict(images, verbose=0)

    first = zoo.load("dlib_resnet")
    np.testing.assert_array_equal(first.predict(images, verbose=0), expected)
    assert (empty_cache / "dlib_resnet" / "dlib_resnet.weights.h5").is_file()
    cached = zoo.load("dlib_resnet")
    np.testing.assert_array_equal(cached.predict(images, verbose=0), expected)
    assert_keras_file_round_trip(cached, images, tmp_path)


def test_facenet_loads_from_the_sources_dir(monkeypatch, empty_cache, facenet_h5):
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(facenet_h5.parent))
    images, _ = _lfw_batch(1, 2, 160)
    with pytest.warns(UserWarning, match="research use"):
        model = zoo.load("facenet")
    expected = convert_facenet_h5(facenet_h5).predict(images, verbose=0)
    np.testing.assert_array_equal(model.predict(images, verbose=0), expected)


def test_fit_fine_tunes_a_loaded_backbone_and_its_triplet_loss_falls(monkeypatch, empty_cache):
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(require(DLIB_DAT).parent))
    images, labels = _lfw_batch(4, 4, 150)
    assert len(set(labels)) == 4 and len(labels) == 16
    backbone = zoo.load("dlib_resnet")
    model = keras.Sequential([backbone, layers.L2Normalize()])
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.TripletLoss(mining="hard"))
    history = model.fit(images, labels, batch_size=16, epochs=6, verbose=0, shuffle=False)
    loss = history.history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.5 * loss[0], loss
