"""``lfw_unseen_<family>``: the three degradation families outside training (motion blur, haze,
speckle) on the hard variants' degraded frames."""

import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.eval import set_generalization as sg
from tests.eval.set_variant_base import degraded_features, two_set_base

SEED = np.array([3, 7], np.int64)


def face(rng, size=64):
    return rng.uniform(20, 235, (size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("family", sg.UNSEEN)
def test_severity_zero_is_the_image_and_draws_are_seeded(family, rng):
    image = face(rng)
    np.testing.assert_array_equal(sg.unseen_degrade(image, family, 0.0, SEED).numpy(), image)
    once, again = (sg.unseen_degrade(image, family, 0.9, SEED).numpy() for _ in range(2))
    np.testing.assert_array_equal(once, again)
    assert once.dtype == np.float32 and once.shape == image.shape
    assert once.min() >= 0 and once.max() <= 255 and np.abs(once - image).mean() > 1.0


@pytest.mark.parametrize("family", sg.UNSEEN)
def test_uint8_in_uint8_out(family, rng):
    """LFW images are uint8 and stay uint8 (the crop takes uint8 pixels): the float result,
    rounded."""
    image = face(rng)
    pixels = np.round(image).astype(np.uint8)
    out = sg.unseen_degrade(pixels, family, 0.9, SEED).numpy()
    assert out.dtype == np.uint8
    expected = sg.unseen_degrade(pixels.astype(np.float32), family, 0.9, SEED).numpy()
    np.testing.assert_array_equal(out, np.round(expected).astype(np.uint8))


def test_haze_is_a_blend_towards_light_grey(rng):
    image = face(rng)
    out = sg.unseen_degrade(image, "haze", 0.5, SEED).numpy()
    a = sg.MAX_HAZE * 0.5
    np.testing.assert_allclose(out, (1 - a) * image + a * sg.HAZE_LIGHT, rtol=1e-6)
    assert out.std() == pytest.approx((1 - a) * image.std(), rel=1e-4)  # contrast loss


def test_speckle_is_multiplicative_and_shared_by_the_channels(rng):
    image = np.full((128, 128, 3), [40.0, 60.0, 80.0], np.float32)
    out = sg.unseen_degrade(image, "speckle", 0.5, SEED).numpy()
    ratio = out / image
    np.testing.assert_allclose(ratio[..., 0], ratio[..., 2], rtol=1e-5)  # one n per pixel
    noise = (ratio[..., 0] - 1) / (sg.MAX_SPECKLE * 0.5)
    assert abs(noise.mean()) < 0.03 and noise.std() == pytest.approx(1.0, abs=0.03)
    other = sg.unseen_degrade(image, "speckle", 0.5, SEED + 1).numpy()
    assert not np.array_equal(out, other)


@pytest.mark.parametrize("severity", [0.5, 1.0])
def test_motion_blur_spreads_a_point_along_a_line_of_its_length(severity):
    """The impulse response is a segment of 16 s px at the seeded angle that keeps the
    intensity (a normalised kernel)."""
    image = np.zeros((61, 61, 3), np.float32)
    image[30, 30] = 255.0
    out = sg.unseen_degrade(image, "motion_blur", severity, SEED).numpy()[..., 0]
    np.testing.assert_allclose(out.sum(), 255.0, rtol=1e-4)
    angle = np.pi * tf.random.stateless_uniform([], SEED).numpy()
    ys, xs = np.nonzero(out > 1e-3)
    w = out[ys, xs]
    along = (xs - 30) * np.cos(angle) + (ys - 30) * np.sin(angle)
    across = -(xs - 30) * np.sin(angle) + (ys - 30) * np.cos(angle)
    length = sg.MAX_MOTION_LENGTH * severity
    assert np.abs(across).max() < 1.5  # a line (bilinear splats: within a pixel of it)
    assert np.abs(along).max() <= length / 2 + 1.5
    # spread along the line: the variance of a uniform segment of that length (+ the splats')
    variance = np.sum(w * along**2) / w.sum()
    assert variance == pytest.approx(length**2 / 12, rel=0.1, abs=0.35)
    assert np.sum(w * across**2) / w.sum() < 0.35


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown unseen family 'fog'"):
        sg.unseen_degrade(np.zeros((4, 4, 3)), "fog", 0.5, SEED)


def test_unseen_variant_replaces_the_degraded_frames_by_their_family(monkeypatch):
    """The base's degraded frames (1 and 3) are degraded by the unseen family with their own
    severity and seed; its sets use those rows, clean frames keep theirs; each family has a
    cache file of its own."""
    union, base = two_set_base([0.0, 0.85, 0.0, 0.95], [0, 5, 0, 6])
    seen = {}

    def fake(frames, columns, degrade, lfw, chips, path, label):
        seen[frames["unseen"][0]] = (frames, columns, degrade, path)
        return degraded_features(frames)

    monkeypatch.setattr(sg, "_cached_degraded_embeddings", fake)
    for family in sg.UNSEEN:
        out = sg._unseen(base, union, family, lfw=None, cache="c", chips=None)
        assert [r.tolist() for r in out["rows_a"]] == [[0, 4]]
        assert [r.tolist() for r in out["rows_b"]] == [[2, 5]]
        assert out["embedding"][[0, 4, 2, 5], 0].tolist() == [0.0, 10.0, 2.0, 11.0]
        assert out["severity"][4:].tolist() == [0.85, 0.95]
        frames, columns, degrade, _ = seen[family]
        assert frames["path"].tolist() == ["a.jpg", "b.jpg"]
        np.testing.assert_allclose(columns[0], [0.85, 0.95])
        assert columns[1].tolist() == [[1, 5], [2, 6]]
        image = np.full((32, 32, 3), 100.0, np.float32)
        np.testing.assert_array_equal(
            degrade(image, np.float32(0.85), np.array([1, 5])).numpy(),
            sg.unseen_degrade(image, family, 0.85, np.array([1, 5])).numpy(),
        )
    assert len({path for *_, path in seen.values()}) == len(sg.UNSEEN)
