"""Served photos and load: a photo over the size cap (G4) at the decoder of the photo
signatures and at a real export, whose process answers correctly afterwards; and the export
under sustained concurrent requests (L1, slow)."""

import functools
import io
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_faceset.data.images import decode_bytes
from keras_faceset.export import ExportSpec, export_saved_model
from keras_faceset.export.pipeline import MAX_PIXELS, decode_images, names_of
from tests.conftest import REPO

FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # the ones whose header states the size


def encoded(fmt: str, size: tuple[int, int] = (6, 8)) -> bytes:
    """A flat grey image of `size` (height, width) in `fmt`."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((*size, 3), 100, np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def with_header_size(data: bytes, fmt: str, height: int, width: int) -> bytes:
    """`data` whose header states `height` x `width` (the pixels stay those of the small image:
    decoding it would fail, or give another size)."""
    data = bytearray(data)
    if fmt == "JPEG":
        frame = data.index(b"\xff\xc0") + 5  # baseline SOF0: length, precision, height, width
        data[frame : frame + 4] = struct.pack(">HH", height, width)
    else:
        offset, layout = {"PNG": (16, ">II"), "GIF": (6, "<HH"), "BMP": (18, "<ii")}[fmt]
        data[offset : offset + struct.calcsize(layout)] = struct.pack(layout, width, height)
    return bytes(data)


@functools.cache
def decoder(max_pixels: int = MAX_PIXELS):
    """The photo signatures' decoding as a graph, as served (traced once per cap)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(image_bytes):
        index = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])[:, None]
        return decode_images(image_bytes, names_of(index), max_pixels)

    return decode


def too_large(name: str, height: int, width: int, max_pixels: int = MAX_PIXELS) -> str:
    return (
        f"{name} is {height} x {width} = {height * width} pixels, more than the {max_pixels} "
        "a photo may have: scale it down"
    )


# --- G4. a photo over the size cap --------------------------------------------------------


def test_a_10000_by_10000_photo_is_refused_from_its_header_and_the_next_answer_is_right():
    for fmt in FORMATS:
        good = encoded(fmt)
        huge = with_header_size(good, fmt, 10_000, 10_000)
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            decoder()([good, huge])
        # refused before decoding: decoding these bytes would fail otherwise, or not be 10k px
        assert too_large("image_bytes[1]", 10_000, 10_000) in error.value.message, fmt
        images, sizes = decoder()([good])
        np.testing.assert_array_equal(sizes, [[6, 8]])
        np.testing.assert_array_equal(images[0], decode_bytes(tf.constant(good)))


def test_the_cap_counts_pixels_from_the_header_or_once_decoded():
    """A 6 x 8 photo passes a cap of 48 pixels and fails one of 47: from the header, or (WebP)
    from the decoded size."""
    for fmt in (*FORMATS, "WEBP"):
        images, _ = decoder(48)([encoded(fmt)])
        assert images.shape == (1, 6, 8, 3)
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            decoder(47)([encoded(fmt)])
        assert too_large("image_bytes[0]", 6, 8, max_pixels=47) in error.value.message, fmt


# --- G4 at a real export, L1 --------------------------------------------------------------

PHOTO = sorted((REPO / "examples" / "images").glob("*.jpg"))[0]  # LFW 250 x 250, one face


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The loaded export of dlib_resnet (photo signatures included)."""
    model_dir = export_saved_model(
        ExportSpec.from_preset("dlib_resnet"), tmp_path_factory.mktemp("models")
    )
    return tf.saved_model.load(str(model_dir))


@pytest.fixture(scope="module")
def huge_photos(tmp_path_factory) -> dict[str, bytes]:
    """Real 10,000 x 10,000 flat-colour JPEG and PNG files, made in a child process so that
    their 300 MB of pixels never count in this process's memory."""
    folder = tmp_path_factory.mktemp("huge")
    script = (
        "import sys; from PIL import Image; "
        "image = Image.new('RGB', (10000, 10000), (90, 120, 150)); "
        "[image.save(f'{sys.argv[1]}/huge.{kind}') for kind in ('jpg', 'png')]"
    )
    subprocess.run([sys.executable, "-c", script, str(folder)], check=True)
    return {kind: (folder / f"huge.{kind}").read_bytes() for kind in ("jpg", "png")}


def _rss(field: str = "VmRSS") -> int:
    """This process's resident memory (or its peak, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_a_served_10000_by_10000_photo_is_refused_in_bounded_memory_and_answers_continue(
    served, huge_photos
):
    photo = PHOTO.read_bytes()
    requests = {
        "detect": lambda huge: [photo, huge],
        "embed_faces": lambda huge: [photo, huge],
        "embed_set": lambda huge: [[photo, huge]],
        "embed_encoded": lambda huge: [photo, huge],
    }
    name, peaks = {"embed_set": "image_bytes[0, 1]"}, []
    before = {
        signature: served.signatures[signature](image_bytes=request(photo))
        for signature, request in requests.items()
    }
    for kind, huge in huge_photos.items():
        for signature, request in requests.items():
            measured = _reset_peak_rss()
            with pytest.raises(tf.errors.InvalidArgumentError) as error:
                served.signatures[signature](image_bytes=request(huge))
            assert too_large(name.get(signature, "image_bytes[1]"), 10_000, 10_000) in (
                error.value.message
            ), (kind, signature)
            if measured:  # decoding it would take 300 MB
                peaks.append(_rss("VmHWM") - _rss())
                assert peaks[-1] < 100e6, (kind, signature)
    if peaks:
        print(f"G4 peak memory above the resident one while refusing: {max(peaks) / 1e6:.1f} MB")
    for signature, request in requests.items():  # the same answers as before
        after = served.signatures[signature](image_bytes=request(photo))
        for key, value in before[signature].items():
            np.testing.assert_allclose(after[key], value, rtol=0, atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_sustained_concurrent_requests_answer_without_error_in_flat_memory(served):
    """L1: 8 client threads call the export for 60 s after a 10 s warm-up, six `embed_faces`
    and two `embed_images`; every answer is the reference one; resident memory grows by less
    than 5 % after the warm-up. Prints the latency percentiles."""
    photo = PHOTO.read_bytes()
    chip = np.asarray(Image.open(PHOTO).convert("RGB").resize((150, 150)))[None]
    calls = {
        "embed_faces": lambda: served.signatures["embed_faces"](image_bytes=[photo]),
        "embed_images": lambda: served.signatures["embed_images"](images=chip),
    }
    reference = {name: call()["embedding"].numpy() for name, call in calls.items()}
    latencies = {name: [] for name in calls}
    errors, rss = [], []
    start = time.monotonic()
    warm, stop = start + 10, start + 70

    def client(index: int) -> None:
        name = "embed_images" if index % 3 == 2 else "embed_faces"
        while (now := time.monotonic()) < stop:
            try:
                embedding = calls[name]()["embedding"].numpy()
                np.testing.assert_allclose(embedding, reference[name], rtol=0, atol=1e-5)
            except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                errors.append(f"{name}: {error!r}")
                return
            if now >= warm:
                latencies[name].append(time.monotonic() - now)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if time.monotonic() >= warm:
            rss.append(_rss())
        time.sleep(0.5)
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    growth = max(rss) / rss[0] - 1
    for name, values in latencies.items():
        p50, p99 = np.percentile(values, [50, 99]) * 1000
        print(f"L1 {name}: {len(values)} calls in 60 s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"L1 resident memory after warm-up: {rss[0] / 1e6:.0f} MB, growth {growth:.2%}")
    assert all(len(values) >= 8 for values in latencies.values())
    assert growth < 0.05
