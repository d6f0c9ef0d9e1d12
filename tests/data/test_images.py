import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_faceset.data.images import (
    CenterCropResize,
    center_crop_resize,
    image_dataset,
    load_image,
)


def test_load_grayscale_png_and_jpeg(tmp_path, rng):
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert image.dtype == tf.uint8 and image.shape == (20, 30, 3)
    np.testing.assert_array_equal(image.numpy(), np.repeat(gray[..., None], 3, axis=-1))
    Image.fromarray(gray, "L").save(tmp_path / "g.jpg", quality=100)
    image = load_image(str(tmp_path / "g.jpg")).numpy()
    assert image.shape == (20, 30, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    # Accurate IDCT: exactly PIL's decode (TF's default fast IDCT is off by up to ~50 here).
    np.testing.assert_array_equal(image[..., 0], np.asarray(Image.open(tmp_path / "g.jpg")))


def test_load_colour_jpeg_equals_pil(tmp_path, rng):
    pixels = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "c.jpg", quality=90)
    expected = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB"))
    np.testing.assert_array_equal(load_image(tmp_path / "c.jpg").numpy(), expected)


def test_load_png_alpha_is_dropped(tmp_path, rng):
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(image.numpy(), rgba[..., :3])


def test_bad_files_name_the_file(tmp_path, rng):
    pixels = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"cannot decode image .*cut\.jpg: .*JPEG"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(ValueError, match=r"cannot decode image .*junk\.png: Unknown image"):
        load_image(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*absent\.jpg"):
        load_image(tmp_path / "absent.jpg")
    assert load_image(tmp_path / "full.jpg").shape == (64, 48, 3)


def _numpy_center_crop(image, side):
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[top : top + side, left : left + side]


def test_center_crop_geometry_matches_numpy(rng):
    image = rng.integers(0, 256, (10, 13, 3)).astype(np.uint8)
    # Output size = crop size: the resize is the identity, leaving just the crop (rows 2-7,
    # columns 3-8: the odd margin's extra column goes right).
    out = center_crop_resize(image, 6, 6).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, image[2:8, 3:9], atol=1e-4)
    np.testing.assert_allclose(out, _numpy_center_crop(image, 6), atol=1e-4)
    # A fraction of the short side: round(0.5 * 10) = 5.
    np.testing.assert_allclose(
        center_crop_resize(image, 0.5, 5).numpy(), _numpy_center_crop(image, 5), atol=1e-4
    )
    np.testing.assert_allclose(
        center_crop_resize(image, 1.0, 10).numpy(), image[:, 1:11], atol=1e-4
    )


def _halve(n: int) -> np.ndarray:
    """2x bilinear antialiased downscale: taps [1, 3, 3, 1] / 8, renormalised at edges."""
    weights = np.zeros((n // 2, n))
    for i in range(n // 2):
        for j, w in zip(range(2 * i - 1, 2 * i + 3), (1, 3, 3, 1), strict=True):
            if 0 <= j < n:
                weights[i, j] = w
    return weights / weights.sum(axis=1, keepdims=True)


def test_center_crop_resize_matches_numpy_filter(rng):
    image = rng.random((12, 14, 2)).astype(np.float32)
    crop = _numpy_center_crop(image, 8)
    expected = np.einsum("ij,jkc,lk->ilc", _halve(8), crop, _halve(8))
    out = center_crop_resize(image, 8, 4).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Batched input: the same per image.
    batch = np.stack([image, image[::-1]])
    out = center_crop_resize(batch, 8, 4).numpy()
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    np.testing.assert_allclose(out[1], center_crop_resize(image[::-1], 8, 4), atol=1e-6)


def test_center_crop_inside_tf_function_with_unknown_shape(rng):
    image = rng.integers(0, 256, (10, 13, 3)).astype(np.uint8)
    fn = tf.function(
        lambda x: center_crop_resize(x, 6, 6),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
    )
    np.testing.assert_allclose(fn(image).numpy(), image[2:8, 3:9], atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="crop_size exceeds"):
        tf.function(
            lambda x: center_crop_resize(x, 11, 4),
            input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
        )(image)


@pytest.mark.parametrize(
    "crop_size, output_size, match",
    [
        (11, 4, "exceeds the 10x13 image"),
        (0, 4, "crop_size must be positive"),
        (1.5, 4, r"fraction in \(0, 1\]"),
        ("6", 4, "crop_size must be an int"),
        (6, 0, "output_size must be positive"),
        (6, 4.0, "output_size must be an int"),
    ],
)
def test_center_crop_bad_arguments(crop_size, output_size, match):
    with pytest.raises(ValueError, match=match):
        center_crop_resize(np.zeros((10, 13, 3)), crop_size, output_size)


def test_center_crop_bad_rank():
    with pytest.raises(ValueError, match="got shape"):
        center_crop_resize(np.zeros((10, 13)), 4, 4)


def test_center_crop_resize_callable(rng):
    image = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    pre = CenterCropResize(16, 8, scale=1 / 128, offset=-127.5 / 128)
    expected = center_crop_resize(image, 16, 8).numpy() / 128 - 127.5 / 128
    np.testing.assert_allclose(pre(image).numpy(), expected, atol=1e-6)
    assert pre.description == (
        "center crop 16 px, bilinear antialiased resize to 8x8, x * 0.0078125 + -0.996094"
    )
    assert CenterCropResize(0.6, 112).description == (
        "center crop 0.6 of the short side, bilinear antialiased resize to 112x112"
    )
    with pytest.raises(ValueError, match="output_size"):
        CenterCropResize(16, -1)


def _write_images(tmp_path, rng, n=5, size=(12, 12)):
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_image_dataset_order_and_batches(tmp_path, rng):
    paths = _write_images(tmp_path, rng)
    batches = list(image_dataset(paths, batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    expected = np.stack([load_image(p).numpy() for p in paths])
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    # With preprocessing and a reversed order.
    pre = CenterCropResize(8, 4)
    out = np.concatenate(list(image_dataset(paths[::-1], pre, batch_size=3)))
    np.testing.assert_allclose(out, np.stack([pre(x) for x in expected[::-1]]), atol=1e-5)


def test_image_dataset_missing_file(tmp_path, rng):
    paths = _write_images(tmp_path, rng, n=2)
    with pytest.raises(FileNotFoundError, match=r"not found: .*gone\.jpg and 1 more"):
        image_dataset([*paths, str(tmp_path / "gone.jpg"), str(tmp_path / "gone2.jpg")])
    with pytest.raises(ValueError, match="empty"):
        image_dataset([])
