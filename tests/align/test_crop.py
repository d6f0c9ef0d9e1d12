import numpy as np
import pytest
from PIL import Image

from keras_faceset.align import box_crop, centre_crop, select_face
from keras_faceset.align.crop import centre_box, margin_box


def pil_resize(image, size):
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def test_margin_box_is_facenets_truncated_clipped_rectangle():
    # facenet: bb = int32([max(x1 - m/2, 0), max(y1 - m/2, 0), min(x2 + m/2, W), min(y2 + m/2, H)])
    assert margin_box([20.7, 10.2, 80.9, 99.5], 32, (120, 100, 3)) == (4, 0, 96, 115)
    assert margin_box([5.0, 30.0, 99.0, 60.0], 32, (120, 100, 3)) == (0, 14, 100, 76)


def test_box_crop_is_a_resized_slice(rng):
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    chip = box_crop(image, [20.7, 10.2, 80.9, 99.5], 32, 160)
    np.testing.assert_array_equal(chip, pil_resize(image[0:115, 4:96], 160))
    with pytest.raises(ValueError, match="does not overlap"):
        box_crop(image, [200.0, 10.0, 260.0, 50.0], 0, 160)


def test_centre_box_uses_the_shorter_side_and_puts_leftovers_bottom_right():
    assert centre_box((250, 250, 3), (0.49, 0.62)) == (64, 47, 186, 202)
    # portrait 400 x 300: 0.5 * 300 = 150 wide, 0.7 * 300 = 210 high
    assert centre_box((400, 300, 3), (0.5, 0.7)) == (75, 95, 225, 305)
    assert centre_box((11, 11, 3), (0.5, 0.5)) == (2, 2, 8, 8)  # 6 px; 5 left over: 2 + 3


def test_centre_crop_is_a_resized_central_slice(rng):
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    np.testing.assert_array_equal(centre_crop(image, (0.5, 0.5), 100), image[50:150, 100:200])
    expected = pil_resize(image[38:162, 88:212], 160)  # 0.62 * 200 = 124
    np.testing.assert_array_equal(centre_crop(image, (0.62, 0.62), 160), expected)


def reference_choice(boxes, shape):
    scores = []
    for x1, y1, x2, y2 in boxes:
        dx, dy = (x1 + x2) / 2 - shape[1] / 2, (y1 + y2) / 2 - shape[0] / 2
        scores.append((x2 - x1) * (y2 - y1) - 2 * (dx * dx + dy * dy))
    return int(np.argmax(scores))


def test_select_face_prefers_large_central_faces(rng):
    shape = (250, 250, 3)
    central_small = [100, 100, 150, 150]  # 2500 px^2, centred
    corner_large = [0, 0, 70, 70]  # 4900 px^2, offset (-90, -90): penalty 32400
    big_near = [80, 60, 190, 180]  # 13200 px^2, offset (10, -5): penalty 250
    assert select_face(np.array([central_small, corner_large]), shape) == 0
    assert select_face(np.array([central_small, corner_large, big_near]), shape) == 2
    for _ in range(50):
        corners = rng.uniform(0, 200, size=(6, 2))
        boxes = np.hstack([corners, corners + rng.uniform(10, 120, size=(6, 2))])
        assert select_face(boxes, shape) == reference_choice(boxes, shape)
    with pytest.raises(ValueError, match="non-empty"):
        select_face(np.zeros((0, 4)), shape)
