"""The converter: sha256-pinned assets, every array used exactly once, clear errors."""

import shutil

import numpy as np
import pytest

from keras_faceset.detect import assign_weights, pnet, read_mtcnn_weights, rnet
from keras_faceset.detect.convert import ASSETS, default_weights_dir


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_every_array_is_assigned_once(name):
    from keras_faceset.detect.networks import NETWORKS

    arrays, path = read_mtcnn_weights(name)
    model = assign_weights(NETWORKS[name](), arrays, str(path))
    weights = [w.numpy() for layer in model.layers for w in layer.weights]
    assert len(weights) == len(arrays)
    for weight, array in zip(weights, arrays, strict=True):
        np.testing.assert_array_equal(weight, array)


def test_unused_array_unset_weight_and_wrong_shape_raise():
    arrays, _ = read_mtcnn_weights("pnet")
    with pytest.raises(ValueError, match="1 array\\(s\\) left unused"):
        assign_weights(pnet(), [*arrays, np.zeros(3, np.float32)], "pnet.lz4")
    with pytest.raises(ValueError, match="conv4_2/bias"):
        assign_weights(pnet(), arrays[:-1], "pnet.lz4")
    with pytest.raises(ValueError, match="layer 'conv1'"):
        assign_weights(pnet(), [arrays[0][..., :5], *arrays[1:]], "pnet.lz4")
    with pytest.raises(ValueError, match="left unused"):
        assign_weights(rnet(), arrays + arrays, "pnet.lz4")


def test_nothing_is_assigned_when_a_check_fails():
    arrays, _ = read_mtcnn_weights("pnet")
    model = pnet()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError):
        assign_weights(model, [*arrays[:-1], np.zeros(5, np.float32)], "pnet.lz4")
    for weight, old in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), old)


def test_tampered_or_missing_asset_names_the_file_and_the_remedy(tmp_path):
    for filename, _ in ASSETS.values():
        shutil.copy(default_weights_dir() / filename, tmp_path / filename)
    read_mtcnn_weights("rnet", tmp_path)  # a faithful copy is accepted
    data = bytearray((tmp_path / "rnet.lz4").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "rnet.lz4").write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match="rnet.lz4 is not the expected.*reinstall mtcnn==1.0.0.*sha256"
    ):
        read_mtcnn_weights("rnet", tmp_path)
    (tmp_path / "onet.lz4").unlink()
    with pytest.raises(FileNotFoundError, match="onet.lz4 not found.*pip install"):
        read_mtcnn_weights("onet", tmp_path)
    with pytest.raises(ValueError, match="unknown MTCNN network 'xnet'"):
        read_mtcnn_weights("xnet")
