import numpy as np
import pytest

from keras_faceset.align import ARCFACE_112, DLIB_150, arcface_template, dlib_template


def test_dlib_template_default_is_the_derived_constant():
    np.testing.assert_allclose(dlib_template(150, 0.25), DLIB_150, atol=1e-12)


def test_dlib_template_rescaling_follows_dlibs_chip_geometry():
    # u = pixel / (size - 1) * (1 + 2 p) - p is the same mean-face coordinate in every chip
    unit = DLIB_150 / 149 * 1.5 - 0.25
    np.testing.assert_allclose(dlib_template(112, 0.4), (unit + 0.4) / 1.8 * 111, atol=1e-12)
    back = dlib_template(150, 0.25, base=dlib_template(200, 0.1), base_size=200, base_padding=0.1)
    np.testing.assert_allclose(back, DLIB_150, atol=1e-9)


def test_templates_are_plausible_faces():
    for points, size in ((DLIB_150, 150), (ARCFACE_112, 112)):
        left_eye, right_eye, nose, mouth_left, mouth_right = points
        assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
        assert abs((left_eye[0] + right_eye[0]) / 2 - (size - 1) / 2) < 2  # centred in x


def test_arcface_template_scales():
    np.testing.assert_allclose(arcface_template(112), ARCFACE_112)
    np.testing.assert_allclose(arcface_template(224), 2 * ARCFACE_112)
    with pytest.raises(ValueError, match="size"):
        arcface_template(1)
