"""NAN (image sets and head form): NumPy reference, masks, composition, round trips, training."""

import keras
import numpy as np
import pytest

from keras_faceset.losses import ContrastiveLoss
from keras_faceset.models import SetEmbeddingModel, identification_model, set_embedding_model
from keras_faceset.models.nan import NAN, NANHead
from keras_faceset.models.seqface import SeqFaceHead
from tests.checks import (
    assert_fit_reduces_loss,
    assert_jit_compile_matches,
    assert_keras_file_round_trip,
)
from tests.conftest import LFW_DIR, require
from tests.models.set_helpers import (
    DIM,
    TinyBackbone,
    image_sets,
    numpy_outputs,
    randomize,
    unit,
)


def nan_reference(
    frames,
    mask,
    query,
    kernels=(),
    biases=(),
    projection=None,
    quality=None,
    quality_kernel=None,
    max_logit=None,
):
    """NAN eqs. (1)-(4) in NumPy (float64): returns (normalised r, last attention). With
    `quality` (B, T, C), every score adds `quality @ quality_kernel`; with `max_logit` c it is
    bounded as c tanh(e / c)."""
    x = frames.astype(np.float64) if projection is None else frames @ projection[0] + projection[1]
    f = unit(x)

    def attend(q):
        e = np.einsum("btd,bd->bt", f, q)
        if quality is not None:
            e = e + quality.astype(np.float64) @ quality_kernel
        if max_logit is not None:
            e = max_logit * np.tanh(e / max_logit)
        e = np.where(mask, e, -np.inf)
        a = np.exp(e - e.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        return a, np.einsum("bt,btd->bd", a, f)

    attention, r = attend(np.broadcast_to(query, (len(f), f.shape[-1])))
    for kernel, bias in zip(kernels, biases, strict=True):
        attention, r = attend(np.tanh(r @ kernel + bias))
    return unit(r), attention


def head_weights(head: NANHead):
    layer = head.get_layer("aggregation")
    arrays = [
        [keras.ops.convert_to_numpy(w) for w in ws]
        for ws in ([layer.query], layer.transfer_kernels, layer.transfer_biases)
    ]
    projection = None
    if head.has_projection:
        projection = [keras.ops.convert_to_numpy(w) for w in head.get_layer("projection").weights]
    return arrays[0][0], arrays[1], arrays[2], projection


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(1)
    return TinyBackbone()


@pytest.mark.parametrize("num_blocks, projection_dim", [(1, None), (2, None), (2, 8)])
def test_head_matches_numpy_reference(rng, num_blocks, projection_dim):
    head = randomize(NANHead(DIM, num_blocks, projection_dim), rng, scale=1.5)
    frames = rng.normal(size=(4, 5, DIM)).astype("float32")
    mask = np.arange(5)[None] < np.array([[5], [3], [1], [4]])
    out = numpy_outputs(head({"frame_embeddings": frames, "mask": mask}))
    expected, attention = nan_reference(frames, mask, *head_weights(head))
    np.testing.assert_allclose(out["embedding"], expected, atol=2e-6)
    np.testing.assert_allclose(out["weights"], attention, atol=2e-6)
    np.testing.assert_allclose(out["weights"].sum(-1), 1.0, atol=1e-6)
    assert np.all(out["weights"][~mask] == 0)
    assert out["embedding"].shape == (4, projection_dim or DIM)


@pytest.mark.parametrize("num_blocks, max_logit", [(1, None), (1, 0.5), (2, 1.5), (2, None)])
def test_quality_features_and_bounded_scores_match_numpy(rng, num_blocks, max_logit):
    """`feature_shape`: `e_k = qᵀ f_k + vᵀ u_k`; `max_logit`: `c tanh(e / c)`; padding (garbage
    features) is ignored."""
    head = randomize(NANHead(DIM, num_blocks, feature_shape=5, max_logit=max_logit), rng, 1.5)
    frames = rng.normal(size=(4, 5, DIM)).astype("float32")
    quality = rng.normal(size=(4, 5, 5)).astype("float32")
    mask = np.arange(5)[None] < np.array([[5], [3], [1], [4]])
    garbage = np.where(mask[..., None], quality, 1e30).astype("float32")
    inputs = {"frame_embeddings": frames, "frame_features": garbage, "mask": mask}
    out = numpy_outputs(head(inputs))
    kernel = keras.ops.convert_to_numpy(head.get_layer("aggregation").quality_kernel)
    expected, attention = nan_reference(
        frames, mask, *head_weights(head), quality, kernel.astype(np.float64), max_logit
    )
    np.testing.assert_allclose(out["embedding"], expected, atol=2e-6)
    np.testing.assert_allclose(out["weights"], attention, atol=2e-6)
    assert np.all(out["weights"][~mask] == 0)
    if max_logit is not None:  # no frame weighs more than exp(2c) times another
        ratio = out["weights"].max(-1) / np.where(mask, out["weights"], np.inf).min(-1)
        assert np.all(ratio <= np.exp(2 * max_logit) * (1 + 1e-5))


def test_quality_head_round_trips_and_streams(rng, tmp_path):
    from keras_faceset.models.streaming import StreamingAggregator

    head = randomize(NANHead(DIM, 1, feature_shape=6, max_logit=2.0), rng, 1.5)
    assert head.get_config()["feature_shape"] == 6 and head.get_config()["max_logit"] == 2.0
    frames = rng.normal(size=(3, 4, DIM)).astype("float32")
    quality = rng.normal(size=(3, 4, 6)).astype("float32")
    inputs = {"frame_embeddings": frames, "frame_features": quality, "mask": np.ones((3, 4), bool)}
    clone = NANHead.from_config(head.get_config())
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(
        numpy_outputs(clone(inputs))["embedding"], numpy_outputs(head(inputs))["embedding"]
    )
    assert_keras_file_round_trip(head, inputs, tmp_path)
    stream = StreamingAggregator(head)
    state = stream.init_state(3)
    for n in range(4):
        state = stream.update(state, frames[:, n], quality[:, n])
    expected = numpy_outputs(head(inputs))["embedding"]
    np.testing.assert_allclose(stream.embedding(state), expected, atol=1e-5)


def test_default_head_has_no_new_weights():
    """The defaults keep the shipped architecture (same weights, so old files load)."""
    assert len(NANHead(DIM, 2).weights) == 3 and len(NANHead(DIM, 1).weights) == 1
    assert NANHead(DIM).get_config()["feature_shape"] is None


def test_image_sets_shapes_masks_and_padding(backbone, rng):
    model = NAN.from_backbone(backbone, num_blocks=2)
    randomize(model.head, rng, scale=1.5)
    images, mask = image_sets(rng, 3, 4, [4, 2, 1])
    out = numpy_outputs(model({"images": images, "mask": mask}))
    assert out["embedding"].shape == (3, DIM) and out["weights"].shape == (3, 4)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out["weights"].sum(-1), 1.0, atol=1e-6)
    assert np.all(out["weights"][~mask] == 0) and np.all(out["weights"][mask] > 0)
    # masked frames are zeroed before the backbone: garbage (even NaN) there changes nothing
    garbage = np.where(mask[..., None, None, None], images, np.nan).astype("float32")
    again = numpy_outputs(model({"images": garbage, "mask": mask}))
    np.testing.assert_array_equal(again["embedding"], out["embedding"])
    # dynamic batch and set size: the same model on 1 set of 6 frames
    six, six_mask = image_sets(rng, 1, 6)
    assert numpy_outputs(model({"images": six, "mask": six_mask}))["weights"].shape == (1, 6)


def test_image_model_is_head_after_backbone(backbone, rng):
    head = randomize(NANHead(DIM, num_blocks=2), rng, scale=1.5)
    model = set_embedding_model(backbone, head)
    assert isinstance(model, NAN) and model.backbone is backbone and model.head is head
    images, mask = image_sets(rng, 2, 3, [3, 2])
    embeddings = keras.ops.convert_to_numpy(backbone(images.reshape(-1, 32, 32, 3)))
    expected = head({"frame_embeddings": embeddings.reshape(2, 3, DIM), "mask": mask})
    out = model({"images": images, "mask": mask})
    for key in ("embedding", "weights"):
        np.testing.assert_allclose(out[key], expected[key], atol=1e-6)


def test_set_of_one_frame_is_its_normalised_embedding(backbone, rng):
    model = randomize(NAN.from_backbone(backbone), rng)
    images, mask = image_sets(rng, 3, 1)
    frame = keras.ops.convert_to_numpy(backbone(images[:, 0]))
    out = numpy_outputs(model({"images": images, "mask": mask}))
    np.testing.assert_allclose(out["embedding"], unit(frame), atol=1e-6)
    np.testing.assert_array_equal(out["weights"], 1.0)


def test_keras_round_trip_image_and_head_forms(backbone, rng, tmp_path):
    model = NAN.from_backbone(backbone, num_blocks=2, projection_dim=8)
    randomize(model.head, rng)
    images, mask = image_sets(rng, 2, 3, [3, 1])
    loaded = assert_keras_file_round_trip(model, {"images": images, "mask": mask}, tmp_path)
    assert isinstance(loaded, NAN) and isinstance(loaded.backbone, TinyBackbone)
    assert loaded.head.num_blocks == 2 and loaded.head.projection_dim == 8
    frames = rng.normal(size=(2, 3, DIM)).astype("float32")
    (tmp_path / "head").mkdir()
    head = assert_keras_file_round_trip(
        model.head, {"frame_embeddings": frames, "mask": mask}, tmp_path / "head"
    )
    assert isinstance(head, NANHead)


def test_fit_contrastive_on_image_sets_lowers_loss(rng):
    keras.utils.set_random_seed(2)
    model = NAN.from_backbone(TinyBackbone(), num_blocks=2)
    # 4 identities, 2 sets each: frames are an identity's base image plus noise
    base = rng.uniform(0, 255, (4, 1, 32, 32, 3))
    labels = np.repeat(np.arange(4), 2).astype("int32")
    images = np.clip(base[labels] + rng.normal(0, 40, (8, 3, 32, 32, 3)), 0, 255)
    mask = np.arange(3)[None] < np.array([[3], [2], [1], [3], [2], [3], [1], [3]])
    x = {"images": images.astype("float32"), "mask": mask}
    assert_fit_reduces_loss(
        model, x, {"embedding": labels}, {"embedding": ContrastiveLoss(pairs="batch")}, epochs=10
    )


def test_training_ignores_nan_padding(rng):
    """Masked frames are zeroed before any arithmetic: NaN padding leaves loss and weights
    finite (no 0 * NaN in the gradients)."""
    head = NANHead(DIM, num_blocks=2, projection_dim=8)
    mask = np.arange(3)[None] < np.array([[3], [1], [2], [2]])
    frames = np.where(mask[..., None], rng.normal(size=(4, 3, DIM)), np.nan).astype("float32")
    x = {"frame_embeddings": frames, "mask": mask}
    assert_fit_reduces_loss(
        head,
        x,
        {"embedding": np.array([0, 0, 1, 1], "int32")},
        {"embedding": ContrastiveLoss(pairs="batch")},
        epochs=10,
    )
    assert all(np.isfinite(w).all() for w in head.get_weights())


def test_jit_compile_head(rng):
    head = randomize(NANHead(DIM, num_blocks=2), rng)
    frames = rng.normal(size=(3, 4, DIM)).astype("float32")
    mask = np.arange(4)[None] < np.array([[4], [2], [1]])
    assert_jit_compile_matches(head, {"frame_embeddings": frames, "mask": mask})


def _noisy_sets(rng, blur, num_ids, per_id, frames, p_noisy):
    """Identity sets of unit-ish frame embeddings; "blurred" frames cluster near `2 blur`,
    whatever the identity (as low-quality faces do), and carry no identity."""
    centres = unit(rng.normal(size=(num_ids, DIM)))
    labels = np.repeat(np.arange(num_ids), per_id)
    good = centres[labels][:, None] + 0.3 * rng.normal(size=(len(labels), frames, DIM))
    noisy = 2.0 * blur + 0.7 * rng.normal(size=(len(labels), frames, DIM))
    is_noisy = rng.uniform(size=(len(labels), frames)) < p_noisy
    is_noisy[:, 0] = False
    return np.where(is_noisy[..., None], noisy, good).astype("float32"), labels.astype("int32")


def test_trained_nan_ignores_a_noisy_frame_better_than_the_mean(rng):
    """Train NAN-2 briefly (contrastive, cached embeddings); adding one blurred frame to a set
    of 3 good ones then moves its embedding much less than it moves the mean embedding."""
    blur = unit(rng.normal(size=DIM))
    frames, labels = _noisy_sets(rng, blur, num_ids=64, per_id=2, frames=6, p_noisy=0.4)
    head = NANHead(DIM, num_blocks=2)
    head.compile(
        keras.optimizers.Adam(5e-2), loss={"embedding": ContrastiveLoss(pairs="batch", margin=1.4)}
    )
    x = {"frame_embeddings": frames, "mask": np.ones(frames.shape[:2], bool)}
    head.fit(x, {"embedding": labels}, epochs=20, batch_size=32, verbose=0)

    good, _ = _noisy_sets(rng, blur, num_ids=50, per_id=1, frames=3, p_noisy=0.0)
    noisy = (2.0 * blur + 0.7 * rng.normal(size=(50, 1, DIM))).astype("float32")
    both = np.concatenate([good, noisy], axis=1)

    def change(model):
        before, after = (
            numpy_outputs(model({"frame_embeddings": s, "mask": np.ones(s.shape[:2], bool)}))
            for s in (good, both)
        )
        return np.mean(1 - np.sum(before["embedding"] * after["embedding"], -1)), after

    nan_change, after = change(head)
    mean_change, _ = change(SeqFaceHead(DIM))
    assert nan_change < 0.5 * mean_change, (
        nan_change,
        mean_change,
    )  # measured 0.027 vs 0.078 (NAN-1: 0.011)
    assert after["weights"][:, -1].mean() < 0.2  # the mean gives it 0.25


@pytest.mark.slow
def test_identification_mode(rng):
    head = NANHead(DIM, num_blocks=1)
    frames = rng.normal(size=(12, 3, DIM)).astype("float32")
    x = {"frame_embeddings": frames, "mask": np.ones((12, 3), bool)}
    labels = np.arange(12).astype("int32") % 4
    model = identification_model(head, num_classes=4)
    assert set(model.output) == {"embedding", "weights", "logits"}
    loss = {"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    assert_fit_reduces_loss(model, x, {"logits": labels}, loss, epochs=20)
    margin = identification_model(head, num_classes=4, classifier="l2_sphereface")
    assert "labels" in margin.input
    assert margin({**x, "labels": labels})["logits"].shape == (12, 4)


def test_bad_arguments_raise(backbone):
    with pytest.raises(ValueError, match="num_blocks"):
        NANHead(DIM, num_blocks=0)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        NANHead(0)
    with pytest.raises(ValueError, match="takes 8-d"):
        NAN(backbone, NANHead(8))
    with pytest.raises(ValueError, match="needs a NANHead"):
        NAN(backbone, SeqFaceHead(DIM))
    with pytest.raises(ValueError, match="Unknown classifier"):
        identification_model(NANHead(DIM), 4, classifier="sigmoid")
    with pytest.raises(ValueError, match="set_size"):
        NANHead(DIM)({"frame_embeddings": np.zeros((2, 3, DIM)), "mask": np.ones((2, 4), bool)})
    with pytest.raises(ValueError, match="feature_shape must be None or a positive int"):
        NANHead(DIM, feature_shape=(4, 4, 8))
    with pytest.raises(ValueError, match="max_logit must be None or a number > 0"):
        NANHead(DIM, max_logit=0.0)


@pytest.mark.slow
def test_real_dlib_weights_on_lfw_images():
    """Pretrained dlib ResNet on real LFW chips: a one-image set gives the image's normalised
    descriptor, and the image-set NAN equals backbone + head on the same frames."""
    from keras_faceset import zoo
    from keras_faceset.data.images import center_crop_resize, load_image

    person = require(LFW_DIR / "lfw-deepfunneled" / "Serena_Williams")
    paths = sorted(person.glob("*.jpg"))[:4]
    chips = np.stack(
        [keras.ops.convert_to_numpy(center_crop_resize(load_image(p), 120, 150)) for p in paths]
    )
    backbone = zoo.load("dlib_resnet")
    model = NAN.from_backbone(backbone, num_blocks=2)
    randomize(model.head, np.random.default_rng(0), scale=3.0)
    descriptors = keras.ops.convert_to_numpy(backbone(chips))

    one = numpy_outputs(model({"images": chips[:, None], "mask": np.ones((4, 1), bool)}))
    np.testing.assert_allclose(one["embedding"], unit(descriptors), atol=1e-6)

    sets = {"images": chips[None], "mask": np.array([[True, True, True, False]])}
    out = numpy_outputs(model(sets))
    expected = numpy_outputs(
        model.head({"frame_embeddings": descriptors[None], "mask": sets["mask"]})
    )
    np.testing.assert_allclose(out["embedding"], expected["embedding"], atol=1e-6)
    np.testing.assert_allclose(out["weights"], expected["weights"], atol=1e-6)
    assert isinstance(model, SetEmbeddingModel)
