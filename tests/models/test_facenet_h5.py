import base64
import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from keras_faceset.models.backbones.inception_resnet_v1 import InceptionResNetV1
from keras_faceset.models.convert.facenet_h5 import (
    convert_facenet_h5,
    facenet_parity,
    load_facenet_weights,
    original_facenet_from_h5,
    prewhiten,
    read_facenet_h5,
)
from tests.conftest import LFW_DIR, REPO, require

# The Lambda of facenet_keras.h5: marshalled CPython 3.6 code of
# `lambda inputs, scale: inputs[0] + inputs[1] * scale` (copied from the file's model_config).
SCALE_SUM_LAMBDA = (
    "4wIAAAAAAAAAAgAAAAMAAABTAAAAcxQAAAB8AGQBGQB8AGQCGQB8ARQAFwBTACkDTukAAAAA6QEA\n"
    "AACpACkC2gZpbnB1dHPaBXNjYWxlcgMAAAByAwAAAPobLi4vY29kZS9mYWNlbmV0X2tlcmFzX3Yx\n"
    "LnB52gg8bGFtYmRhPloAAADzAAAAAA==\n"
)


# ---------------------------------------------------------------- small synthetic files


def _tiny_model() -> keras.Model:
    """Conv + BatchNorm(scale=False) + Dense, named like facenet_keras layers."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="Conv2d_1a_3x3")(inputs)
    x = keras.layers.BatchNormalization(scale=False, name="Conv2d_1a_3x3_BatchNorm")(x)
    x = keras.layers.GlobalAveragePooling2D(name="AvgPool")(x)
    x = keras.layers.Dense(2, use_bias=True, name="Bottleneck")(x)
    return keras.Model(inputs, x, name="tiny")


def _random_weights(model, rng) -> dict[str, dict[str, np.ndarray]]:
    """Keras-2 style names -> arrays, e.g. {"Bottleneck": {"Bottleneck/kernel:0": ...}}."""
    return {
        layer.name: {
            f"{layer.name}/{w.name}:0": rng.uniform(0.5, 1.5, size=w.shape).astype("float32")
            for w in layer.weights
        }
        for layer in model.layers
        if layer.weights
    }


def _write_keras2_h5(path: Path, weights: dict, model_config: dict | None = None) -> Path:
    """A file laid out like Keras 2.1's `model.save`: model_weights/<layer>/<layer>/<w>:0."""
    with h5py.File(path, "w") as f:
        if model_config is not None:
            f.attrs["model_config"] = json.dumps(model_config)
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in weights]
        for layer_name, arrays in weights.items():
            layer_group = group.create_group(layer_name)
            layer_group.attrs["weight_names"] = [name.encode() for name in arrays]
            for name, array in arrays.items():
                layer_group[name] = array
    return path


def test_read_and_load_round_trip(tmp_path, rng):
    source = _tiny_model()
    weights = _random_weights(source, rng)
    path = _write_keras2_h5(tmp_path / "tiny.h5", weights)

    stored = read_facenet_h5(path)
    assert list(stored) == ["Conv2d_1a_3x3", "Conv2d_1a_3x3_BatchNorm", "Bottleneck"]
    assert [a.shape for a in stored["Conv2d_1a_3x3_BatchNorm"]] == [(4,), (4,), (4,)]

    model = _tiny_model()
    assert load_facenet_weights(model, path) is model
    for name, arrays in weights.items():
        for variable, array in zip(model.get_layer(name).weights, arrays.values(), strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), array)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda w: w.pop("Bottleneck"), r"have no stored weights: \['Bottleneck'\]"),
        (lambda w: w.update(Extra={"Extra/kernel:0": np.ones(3)}), r"unused.*\['Extra'\]"),
        (
            lambda w: w["Bottleneck"].update({"Bottleneck/spare:0": np.ones(2)}),
            "layer 'Bottleneck' stores 3 arrays but the model's layer has 2",
        ),
        (
            lambda w: w["Bottleneck"].update({"Bottleneck/kernel:0": np.ones((5, 2))}),
            r"layer 'Bottleneck' weight 'kernel' has shape \(4, 2\) in the model but \(5, 2\)",
        ),
    ],
    ids=["missing-layer", "unused-layer", "extra-array", "wrong-shape"],
)
def test_load_errors_name_the_problem_and_assign_nothing(tmp_path, rng, edit, match):
    model = _tiny_model()
    weights = _random_weights(model, rng)
    edit(weights)
    path = _write_keras2_h5(tmp_path / "bad.h5", weights)
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    with pytest.raises(ValueError, match=match):
        load_facenet_weights(model, path)
    for variable, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


def test_bad_files_raise_naming_the_file(tmp_path, rng):
    text = tmp_path / "not_hdf5.h5"
    text.write_text("facenet weights, honest\n" * 100)
    with pytest.raises(ValueError, match="not_hdf5.h5 is not a readable HDF5 file"):
        read_facenet_h5(text)

    full = _write_keras2_h5(tmp_path / "full.h5", _random_weights(_tiny_model(), rng))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.h5"):
        read_facenet_h5(truncated)

    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(ValueError, match="empty.h5 holds no Keras weights"):
        read_facenet_h5(empty)

    with pytest.raises(FileNotFoundError, match="nowhere.h5 does not exist"):
        convert_facenet_h5(tmp_path / "nowhere.h5")


def test_prewhiten_is_per_image_standardisation(rng):
    images = rng.integers(0, 256, size=(2, 5, 4, 3))
    got = prewhiten(images)
    for image, whitened in zip(images, got, strict=True):
        expected = (image - image.mean()) / max(image.std(), 1 / np.sqrt(60))
        np.testing.assert_allclose(whitened, expected, atol=1e-6)


def _scale_sum_config(function: str) -> dict:
    """model_config of Input(4) -> Dense "Up" -> Lambda(Input + 0.5 * Up), Keras 2.1 style."""
    dense = {"name": "Up", "units": 4, "activation": "linear", "use_bias": False}
    lam = {"name": "Sum", "function": [function, None, None], "arguments": {"scale": 0.5}}
    return {
        "class_name": "Model",
        "config": {
            "name": "toy",
            "layers": [
                {"name": "in", "class_name": "InputLayer", "inbound_nodes": [],
                 "config": {"batch_input_shape": [None, 4], "name": "in"}},
                {"name": "Up", "class_name": "Dense", "config": dense,
                 "inbound_nodes": [[["in", 0, 0, {}]]]},
                {"name": "Sum", "class_name": "Lambda", "config": lam,
                 "inbound_nodes": [[["in", 0, 0, {}], ["Up", 0, 0, {}]]]},
            ],
            "input_layers": [["in", 0, 0]],
            "output_layers": [["Sum", 0, 0]],
        },
    }  # fmt: skip


def test_original_rebuilt_from_model_config(tmp_path, rng):
    kernel = rng.normal(size=(4, 4)).astype("float32")
    weights = {"Up": {"Up/kernel:0": kernel}}
    path = _write_keras2_h5(tmp_path / "toy.h5", weights, _scale_sum_config(SCALE_SUM_LAMBDA))
    model = original_facenet_from_h5(path)
    x = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)), x + 0.5 * (x @ kernel), atol=1e-6
    )

    other = base64.b64encode(b"\xe3 some other function").decode()
    path = _write_keras2_h5(tmp_path / "other.h5", weights, _scale_sum_config(other))
    with pytest.raises(ValueError, match="unknown Lambda 'Sum'"):
        original_facenet_from_h5(path)


# ---------------------------------------------------------------- the real file (slow)


@pytest.fixture(scope="module")
def facenet(facenet_h5) -> InceptionResNetV1:
    return convert_facenet_h5(facenet_h5)


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_facenet", REPO / "zoo" / "convert_facenet.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_real_file_every_weight_used_once(facenet_h5, facenet):
    stored = read_facenet_h5(facenet_h5)
    assert len(stored) == 245  # 132 Conv2D + 112 BatchNormalization + 1 Dense
    stored_params = sum(a.size for arrays in stored.values() for a in arrays)
    assert stored_params == facenet.count_params() == 22_808_144
    for name, arrays in stored.items():
        layer = facenet.get_layer(name)
        assert len(layer.weights) == len(arrays)
        for variable, array in zip(layer.weights, arrays, strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), array)


@pytest.mark.slow
def test_parity_with_original_graph_on_lfw(facenet_h5, facenet):
    images = _load_script().lfw_centre_crops(require(LFW_DIR / "lfw-deepfunneled"), 20)
    assert images.shape == (20, 160, 160, 3)
    # In-model float32 standardisation vs the original's float64 NumPy prewhiten.
    assert facenet_parity(facenet, facenet_h5, images) <= 1e-5
    # Same standardised input: the two graphs agree to the last bit.
    bare = convert_facenet_h5(facenet_h5, include_preprocessing=False)
    assert facenet_parity(bare, facenet_h5, images[:4]) == 0.0


def _lfw_pairs(count: int) -> tuple[list, list]:
    """The first `count` matched and mismatched pairs of fold 1 of LFW View 2."""
    lines = [line.split() for line in require(LFW_DIR / "pairs.txt").read_text().splitlines()]
    matched = [(n, a, n, b) for n, a, b in lines[1 : 1 + count]]
    mismatched = [tuple(line) for line in lines[301 : 301 + count]]
    return matched, mismatched


@pytest.mark.slow
def test_same_person_closer_than_different_people(facenet):
    from PIL import Image

    def crop(name, index):
        file = LFW_DIR / "lfw-deepfunneled" / name / f"{name}_{int(index):04d}.jpg"
        return np.asarray(Image.open(require(file)).convert("RGB"))[45:205, 45:205]

    def squared_distances(pairs):
        left = np.stack([crop(a, i) for a, i, _, _ in pairs])
        right = np.stack([crop(b, j) for _, _, b, j in pairs])
        emb = facenet.predict(np.concatenate([left, right]), batch_size=20, verbose=0)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        return np.sum((emb[: len(pairs)] - emb[len(pairs) :]) ** 2, axis=1)

    matched, mismatched = _lfw_pairs(10)
    same, different = squared_distances(matched), squared_distances(mismatched)
    # Measured on these pairs: same 0.18-0.57, different 1.64-2.14 (squared L2, unit vectors).
    assert np.median(same) < 0.6 < 1.5 < np.median(different)
    accuracy = (np.mean(same < 1.1) + np.mean(different >= 1.1)) / 2
    assert accuracy == 1.0


@pytest.mark.slow
def test_convert_script(facenet_h5, tmp_path, capsys):
    out = tmp_path / "facenet.weights.h5"
    lfw = str(require(LFW_DIR / "lfw-deepfunneled"))
    arguments = ["--h5", str(facenet_h5), "--out", str(out), "--images", "2", "--lfw", lfw]
    assert _load_script().main(arguments) == 0
    printed = capsys.readouterr().out
    assert "parity: max abs diff" in printed and f"wrote {out} sha256" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["facenet.weights.h5"]  # temp file renamed
    model = InceptionResNetV1()
    model.load_weights(out)
    reference = read_facenet_h5(facenet_h5)["Bottleneck"][0]
    np.testing.assert_array_equal(model.get_layer("Bottleneck").get_weights()[0], reference)
