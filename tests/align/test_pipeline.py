from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_faceset.align import (
    DLIB_WEIGHTS,
    Detections,
    MtcnnDetector,
    align_faces,
    apply_affine,
    box_crop,
    dlib_template,
    to_rgb_uint8,
    umeyama,
)
from keras_faceset.align.pipeline import CACHE_VERSION
from keras_faceset.zoo.presets import PRESETS
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples" / "images").glob("*.jpg"))
NO_FACE = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2)))


class FakeDetector(MtcnnDetector):
    """Canned detections (no networks) that counts its calls."""

    def __init__(self, found: Detections = NO_FACE):
        super().__init__()
        self.found = found
        self.calls = 0
        self.images = 0

    def detect(self, images):
        self.calls += 1
        self.images += len(images)
        return [self.found for _ in images]


ONE_FACE = Detections(
    boxes=np.array([[10.0, 8.0, 40.0, 44.0]], np.float32),
    scores=np.array([0.99], np.float32),
    landmarks=np.array([[[18, 20], [32, 20], [25, 28], [19, 36], [31, 36]]], np.float32),
)


@pytest.fixture(scope="module")
def mtcnn():
    """One real detector for the module: building MTCNN takes seconds."""
    pytest.importorskip("mtcnn")
    return MtcnnDetector()


def ramp(height=40, width=50):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 5, y * 6, (x + y) * 2], axis=-1).astype(np.uint8)


def test_noise_falls_back_to_the_centre_crop(mtcnn):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (258, 320, 3), dtype=np.uint8)
    square = rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)
    batch = align_faces([noise], fallback_fraction=0.62, detector=mtcnn)  # 0.62 * 258 -> 160 px
    assert batch.fallback.tolist() == [True] and batch.fallback_names == ["<array 0>"]
    np.testing.assert_array_equal(batch.chips[0], noise[49:209, 80:240])
    np.testing.assert_array_equal(batch.boxes[0], [80, 49, 240, 209])
    assert batch.confidence[0] == 0 and np.all(np.isnan(batch.landmarks[0]))
    # five_point default: a 0.47 * 250 -> 118 px square, resized to 150 with PIL's bilinear
    batch = align_faces([square], method="five_point", detector=mtcnn)
    reference = Image.fromarray(square[66:184, 66:184]).resize((150, 150), Image.BILINEAR)
    assert batch.fallback.tolist() == [True]
    np.testing.assert_array_equal(batch.chips[0], np.asarray(reference))


def test_faces_are_found_batched_and_cropped_per_preset(mtcnn):
    from keras_faceset.data.images import load_image

    images = [load_image(path).numpy() for path in EXAMPLES]
    batched = mtcnn.detect(images)
    for image, found in zip(images, batched, strict=True):
        alone = mtcnn.detect([image])[0]
        np.testing.assert_allclose(alone.landmarks, found.landmarks, atol=1e-3)
    facenet = align_faces(EXAMPLES, **PRESETS["facenet"].crop, detector=mtcnn)
    assert facenet.chips.shape == (3, 160, 160, 3) and facenet.chips.dtype == np.uint8
    assert not facenet.fallback.any() and np.all(facenet.confidence > 0.95)
    assert facenet.names == [str(path) for path in EXAMPLES]
    for image, chip, box, points in zip(
        images, facenet.chips, facenet.boxes, facenet.landmarks, strict=True
    ):
        np.testing.assert_array_equal(chip, box_crop(image, box, 32, 160))
        assert np.all((points >= box[:2]) & (points <= box[2:]))
        assert points[0, 0] < points[2, 0] < points[1, 0]  # left eye, nose, right eye
    dlib = align_faces(EXAMPLES, **PRESETS["dlib_resnet"].crop, detector=mtcnn)
    assert dlib.chips.shape == (3, 150, 150, 3) and not dlib.fallback.any()
    np.testing.assert_array_equal(dlib.landmarks, facenet.landmarks)
    template = dlib_template(150, 0.25)
    for points in dlib.landmarks:  # the fitted eyes land within 3 px of the template's
        moved = apply_affine(umeyama(points, template, DLIB_WEIGHTS), points)
        assert np.all(np.linalg.norm(moved[:2] - template[:2], axis=1) < 3)


def write_bmp(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


def test_cache_hits_skip_detection_and_a_changed_byte_misses(tmp_path):
    first = write_bmp(tmp_path / "a.bmp", ramp())
    second = write_bmp(tmp_path / "b.bmp", ramp()[::-1].copy())
    detector = FakeDetector(ONE_FACE)
    options = {"method": "five_point", "detector": detector, "cache": tmp_path / "cache"}
    cold = align_faces([first, second], **options)
    assert (detector.calls, detector.images) == (1, 2)
    warm = align_faces([first, second], **options)
    assert detector.calls == 1
    for field in ("chips", "boxes", "landmarks", "confidence", "fallback"):
        np.testing.assert_array_equal(getattr(warm, field), getattr(cold, field))
    entries = list((tmp_path / "cache").rglob("*"))
    assert len([p for p in entries if p.suffix == ".npz"]) == 2
    assert not [p for p in entries if ".part" in p.name]

    data = bytearray(first.read_bytes())
    pixels = int.from_bytes(data[10:14], "little")  # BMP: bottom-up rows of 152 bytes
    data[pixels + 20 * 152 + 25 * 3] ^= 0x40  # the blue of pixel (x 25, y 19)
    first.write_bytes(bytes(data))
    changed = align_faces([first, second], **options)
    assert (detector.calls, detector.images) == (2, 3)  # only the changed file is detected
    assert np.any(changed.chips[0] != cold.chips[0])
    np.testing.assert_array_equal(changed.chips[1], cold.chips[1])

    align_faces([first], **{**options, "size": 112})  # other settings: another key
    assert detector.calls == 3
    for entry in (tmp_path / "cache").rglob("*.npz"):
        entry.write_bytes(b"not a zip")  # unreadable entries are misses, then rewritten
    again = align_faces([second], **options)
    assert detector.calls == 4
    np.testing.assert_array_equal(again.chips[0], cold.chips[1])
    align_faces([second], **options)
    assert detector.calls == 4


def test_cache_key_includes_a_version_and_the_detector_settings(tmp_path):
    path = write_bmp(tmp_path / "a.bmp", ramp())
    align_faces([path], detector=FakeDetector(), cache=tmp_path / "c")
    same = FakeDetector()
    align_faces([path], detector=same, cache=tmp_path / "c")
    strict = FakeDetector()
    strict.thresholds = (0.6, 0.7, 0.9)
    align_faces([path], detector=strict, cache=tmp_path / "c")
    assert (same.calls, strict.calls) == (0, 1)
    settings = next((tmp_path / "c").rglob("settings.json")).read_text()
    assert f'"version": {CACHE_VERSION}' in settings


@pytest.fixture
def odd_files(tmp_path):
    rgb = ramp()
    files = {"rgb": tmp_path / "rgb.png", "gray": tmp_path / "gray.png"}
    Image.fromarray(rgb).save(files["rgb"])
    Image.fromarray(rgb[..., 0]).save(files["gray"])
    files["rgba"] = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])).save(files["rgba"])
    files["gray16"] = tmp_path / "gray16.png"
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(files["gray16"])
    files["cmyk"] = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(files["cmyk"], quality=95)
    files["truncated"] = tmp_path / "truncated.jpg"
    Image.fromarray(rgb).save(files["truncated"], quality=95)
    files["truncated"].write_bytes(files["truncated"].read_bytes()[:300])
    return rgb, files


def test_odd_files_become_rgb_uint8_or_a_clear_error(odd_files):
    rgb, files = odd_files
    gray = np.repeat(rgb[..., :1], 3, axis=2)
    # no face: the whole central 40 x 40 square, at 40 px (no resampling)
    options = {"fallback_fraction": 1.0, "size": 40, "detector": FakeDetector()}
    names = ["rgb", "gray", "rgba", "gray16", "cmyk"]
    batch = align_faces([files[name] for name in names], **options)
    assert batch.chips.dtype == np.uint8 and batch.fallback.all()
    for name, chip in zip(names, batch.chips, strict=True):
        expected = gray if name.startswith("gray") else rgb
        tolerance = 3 if name == "cmyk" else 0  # JPEG
        assert np.abs(chip.astype(int) - expected[:, 5:45]).mean() <= tolerance, name
    with pytest.raises(ValueError, match="truncated.jpg"):
        align_faces([files["truncated"]], **options)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        align_faces([files["rgb"].parent / "missing.jpg"], **options)


def test_arrays_are_converted_to_rgb_uint8():
    rgb = ramp()
    gray = rgb[..., 0]
    np.testing.assert_array_equal(to_rgb_uint8(gray), np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(to_rgb_uint8(gray[..., None]), to_rgb_uint8(gray))
    np.testing.assert_array_equal(to_rgb_uint8(np.dstack([rgb, rgb[..., :1]])), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(rgb.astype(np.uint16) * 257), rgb)
    with pytest.raises(ValueError, match=r"<array 1>: expected uint8"):
        align_faces([rgb, rgb.astype(np.float32)], detector=FakeDetector())
    with pytest.raises(ValueError, match="shape"):
        to_rgb_uint8(np.zeros((4, 4, 2), np.uint8))
    batch = align_faces(np.stack([rgb, rgb]), size=32, detector=FakeDetector(ONE_FACE))
    assert batch.chips.shape == (2, 32, 32, 3) and batch.names == ["<array 0>", "<array 1>"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "funnel"}, "unknown method"),
        ({"padding": 0.25}, "padding applies to method='five_point'"),
        ({"method": "five_point", "margin": 32}, "margin applies to method='mtcnn_box'"),
        ({"method": "five_point", "template": "vgg"}, "unknown template"),
        ({"method": "five_point", "template": np.zeros((5, 2))}, "needs the size"),
        ({"method": "five_point", "template": np.zeros((4, 2)), "size": 9}, r"\(5, 2\)"),
        ({"method": "five_point", "template": "arcface", "padding": 0.1}, "template='dlib' only"),
        ({"method": "five_point", "weights": [1, 1]}, "5 values"),
        ({"size": 0}, "size must be"),
        ({"margin": -4}, "margin must be"),
        ({"fallback_fraction": 1.5}, "fallback_fraction"),
        ({"fallback_fraction": (0.5, 0.5, 0.5)}, "fallback_fraction"),
    ],
)
def test_bad_options_raise_naming_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        align_faces([ramp()], detector=FakeDetector(), **options)


def test_bad_image_lists_raise(tmp_path):
    with pytest.raises(ValueError, match="single path"):
        align_faces(str(tmp_path / "a.jpg"), detector=FakeDetector())
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        align_faces(ramp(), detector=FakeDetector())
    with pytest.raises(ValueError, match="empty"):
        align_faces([], detector=FakeDetector())
    with pytest.raises(ValueError, match="image 1 must be a path or a numpy array"):
        align_faces([ramp(), 3], detector=FakeDetector())


def test_arcface_template_gives_112_px_chips():
    batch = align_faces(
        [ramp()], method="five_point", template="arcface", detector=FakeDetector(ONE_FACE)
    )
    assert batch.chips.shape == (1, 112, 112, 3) and not batch.fallback.any()


def test_find_faces_returns_every_face_of_a_collage(mtcnn):
    """Two photos side by side: both faces, each where it is in its own photo (shifted), cut
    as `crop_face` cuts it; a noise image has none; `max_faces` keeps the largest."""
    from keras_faceset.align import crop_face, find_faces
    from keras_faceset.gallery.tracks import box_iou

    left, right = (to_rgb_uint8(np.asarray(Image.open(p))) for p in EXAMPLES[:2])
    collage = np.concatenate([left, right], axis=1)
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    spec = PRESETS["dlib_resnet"].crop_spec
    found = find_faces([collage, noise, left], spec, detector=mtcnn)
    assert list(found.face_count) == [2, 0, 1] and list(found.image) == [0, 0, 2]
    alone = [mtcnn.detect([image])[0] for image in (left, right)]
    shift = np.array([0, 0, 0, 0], np.float32), np.array([left.shape[1], 0] * 2, np.float32)
    expected = np.stack([alone[i].boxes[0] + shift[i] for i in (0, 1)])
    iou = box_iou(found.boxes[:2], expected)  # each face near where its own photo put it
    assert sorted(iou.argmax(axis=1)) == [0, 1] and np.all(iou.max(axis=1) > 0.7), iou
    areas = (found.boxes[:2, 2] - found.boxes[:2, 0]) * (found.boxes[:2, 3] - found.boxes[:2, 1])
    assert areas[0] >= areas[1]  # largest first
    for face, image in enumerate((collage, collage, left)):
        cut = crop_face(image, spec, found.boxes[face], found.landmarks[face])
        np.testing.assert_array_equal(found.chips[face], cut)
    single = align_faces([left], **PRESETS["dlib_resnet"].crop, detector=mtcnn)
    np.testing.assert_array_equal(found.chips[2], single.chips[0])  # one face: as align_faces
    largest = find_faces([collage], spec, detector=mtcnn, max_faces=1)
    np.testing.assert_array_equal(largest.boxes, found.boxes[:1])
    with pytest.raises(ValueError, match="max_faces"):
        find_faces([collage], spec, detector=mtcnn, max_faces=0)
