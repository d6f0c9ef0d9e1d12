import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.data import degrade as D
from keras_faceset.data.images import load_image
from tests.conftest import LFW_DIR, require

SEVERITIES = (0.25, 0.5, 0.75, 1.0)


def textured(seed: int = 0, size: int = 64) -> np.ndarray:
    """A smooth colour gradient plus mid-frequency texture, uint8 (size, size, 3)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 215, (size // 8, size // 8, 3))
    texture = np.kron(coarse, np.ones((8, 8, 1)))
    ramp = np.linspace(-30, 30, size)[:, None, None]
    return np.clip(texture + ramp + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("kind", D.KINDS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_severity_zero_is_identity_and_dtype_shape_kept(kind, dtype):
    batch = np.stack([textured(0), textured(1)]).astype(dtype)
    for image in (batch, batch[0]):
        clean = D.degrade(image, kind, 0.0, [1, 2])
        np.testing.assert_array_equal(clean.numpy(), image)
        out = D.degrade(image, kind, 0.6, [1, 2])
        assert out.dtype == tf.as_dtype(dtype) and out.shape == image.shape
        assert not np.array_equal(out.numpy(), image)
        assert out.numpy().min() >= 0 and out.numpy().max() <= 255


@pytest.mark.parametrize("kind", D.KINDS)
def test_monotone_in_severity(kind):
    image = textured(3)
    values = [psnr(D.degrade(image, kind, s, [5, 6]), image) for s in SEVERITIES]
    assert np.all(np.diff(values) < 0), values


@pytest.mark.parametrize("kind", D.KINDS)
def test_deterministic_bit_for_bit(kind):
    image = np.stack([textured(0), textured(1)])
    first = D.degrade(image, kind, 0.7, [3, 4]).numpy()
    second = D.degrade(tf.constant(image), kind, tf.constant(0.7), tf.constant([3, 4])).numpy()
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("kind", ["noise", "occlusion"])
def test_different_seeds_differ(kind):
    image = textured(0)
    a = D.degrade(image, kind, 0.7, [0, 1]).numpy()
    b = D.degrade(image, kind, 0.7, [0, 2]).numpy()
    assert not np.array_equal(a, b)


def test_frames_of_a_batch_draw_independent_noise():
    image = np.full((2, 32, 32, 3), 128, np.uint8)
    out = D.degrade(image, "noise", 0.5, [0, 1]).numpy()
    assert not np.array_equal(out[0], out[1])


def test_blur_matches_numpy_separable_gaussian():
    image = textured(2, size=40).astype(np.float32)
    severity = 0.4
    sigma = D.MAX_BLUR_SIGMA * severity
    radius = int(np.ceil(3 * sigma))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(
        image.astype(np.float64), [(radius, radius), (radius, radius), (0, 0)], "reflect"
    )
    rows = sum(w * padded[i : i + 40] for i, w in enumerate(kernel))
    expected = sum(w * rows[:, i : i + 40] for i, w in enumerate(kernel))
    got = D.degrade(image, "blur", severity, [0, 0]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_noise_std_and_gamma_formula():
    gray = np.full((64, 64, 3), 128.0, np.float32)
    diff = D.degrade(gray, "noise", 0.5, [1, 1]).numpy() - gray
    assert abs(diff.std() - 0.5 * D.MAX_NOISE_STD) < 0.02 * 0.5 * D.MAX_NOISE_STD
    assert abs(diff.mean()) < 0.5
    image = textured(4).astype(np.float32)
    got = D.degrade(image, "gamma", 0.5, [2, 3]).numpy()
    candidates = [255 * (image / 255) ** (D.MAX_GAMMA**e) for e in (0.5, -0.5)]
    assert min(np.abs(got - c).max() for c in candidates) < 1e-3


def test_occlusion_area_and_downscale_and_jpeg_quality():
    flat = np.full((100, 100, 3), 60, np.uint8)
    for seed in range(4):
        changed = np.any(D.degrade(flat, "occlusion", 0.6, [seed, 0]).numpy() != 60, axis=-1)
        # the rectangle has area 0.5 * 0.6 * 100 * 100 up to its rounded border
        assert abs(changed.sum() - 3000) < 2 * (100 + 100) + 4, changed.sum()
        rows, cols = np.nonzero(changed)
        assert changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    image = textured(5)
    small = tf.image.resize(image.astype(np.float32), (8, 8), antialias=True)
    expected = tf.image.resize(small, (64, 64))  # severity 1: 64 / 8 = 8 px
    np.testing.assert_array_equal(
        D.degrade(image, "downscale", 1.0, [0, 0]).numpy(),
        np.round(np.clip(expected.numpy(), 0, 255)).astype(np.uint8),
    )
    np.testing.assert_array_equal(
        D.degrade(image, "jpeg", 0.5, [0, 0]).numpy(),
        tf.image.adjust_jpeg_quality(image, 50).numpy(),
    )


def test_random_degradation_batch_equals_per_frame_seeds():
    batch = np.stack([textured(i) for i in range(4)])
    images, kinds, severities = D.random_degradation(batch, [7, 8])
    assert images.dtype == tf.uint8 and images.shape == batch.shape
    assert kinds.shape == (4,) and severities.shape == (4,)
    for i in range(4):
        one, kind, severity = D.random_degradation(batch[i], D.frame_seed([7, 8], i))
        np.testing.assert_array_equal(one.numpy(), images[i].numpy())
        assert kind == kinds[i] and severity == severities[i]
        expected = D.degrade(
            batch[i], D.KINDS[int(kind)], severity, _op_seed(D.frame_seed([7, 8], i))
        )
        np.testing.assert_array_equal(one.numpy(), expected.numpy())


def _op_seed(seed):
    return tf.random.experimental.stateless_split(seed, 3)[2]


def test_random_degradation_kinds_severity_and_seeds():
    image = textured(1)
    draws = [D.random_degradation(image, [0, i], kinds=("jpeg", "gamma")) for i in range(20)]
    kinds = {int(k) for _, k, _ in draws}
    assert kinds == {D.KINDS.index("jpeg"), D.KINDS.index("gamma")}
    severities = np.array([float(s) for _, _, s in draws])
    assert severities.min() >= 0 and severities.max() < 1 and severities.std() > 0.1
    assert len({d[0].numpy().tobytes() for d in draws}) == 20
    _, _, fixed = D.random_degradation(image, [0, 1], severity=0.3)
    assert fixed.numpy() == np.float32(0.3)
    again = D.random_degradation(image, [0, 3], kinds=("jpeg", "gamma"))
    np.testing.assert_array_equal(again[0].numpy(), draws[3][0].numpy())


def test_inside_tf_data_map_equals_eager():
    image = tf.constant(textured(2))
    seeds = tf.data.Dataset.range(6).map(lambda i: tf.stack([tf.constant(11, tf.int64), i]))
    dataset = seeds.map(lambda seed: D.random_degradation(image, seed))
    for i, (out, kind, severity) in enumerate(dataset):
        eager = D.random_degradation(image, [11, i])
        np.testing.assert_array_equal(out.numpy(), eager[0].numpy())
        assert kind == eager[1] and severity == eager[2]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda img: D.degrade(img, "smear", 0.5), "unknown degradation kind"),
        (lambda img: D.degrade(img, "blur", 1.5), "severity must be in"),
        (lambda img: D.degrade(img, "blur", 0.5, [1, 2, 3]), "seed must be"),
        (lambda img: D.degrade(img, "blur", 0.5, [0.5, 1.0]), "seed must be"),
        (lambda img: D.degrade(img[..., 0], "blur", 0.5), r"image must be \(H, W, 3\)"),
        (lambda img: D.degrade(img.astype(np.int32), "blur", 0.5), "uint8 or float"),
        (lambda img: D.random_degradation(img, [0, 0], kinds="blur"), "kinds must be"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call(textured(0))


@pytest.mark.slow
@pytest.mark.parametrize("kind", D.KINDS)
def test_monotone_on_real_lfw_images(kind):
    names = ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Serena_Williams/Serena_Williams_0004.jpg"]
    names.append("George_W_Bush/George_W_Bush_0010.jpg")
    for name in names:
        image = load_image(require(LFW_DIR / "lfw-deepfunneled" / name))
        values = [psnr(D.degrade(image, kind, s, [1, 2]), image) for s in SEVERITIES]
        assert np.all(np.diff(values) < 0), (name, values)


def test_kind_given_as_a_tensor_index_equals_the_name():
    image = textured(6)
    for index, kind in enumerate(D.KINDS):
        by_name = D.degrade(image, kind, 0.5, [4, 4]).numpy()
        by_index = D.degrade(image, tf.constant(index), 0.5, [4, 4]).numpy()
        np.testing.assert_array_equal(by_index, by_name)
    with pytest.raises(tf.errors.InvalidArgumentError, match="kind index must be in"):
        D.degrade(image, tf.constant(len(D.KINDS)), 0.5, [4, 4])
    with pytest.raises(ValueError, match="kind must be a name or an integer"):
        D.degrade(image, tf.constant(1.0), 0.5, [4, 4])
