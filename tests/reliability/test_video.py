"""G5: a very long video. The tracker over 100,000 frames of synthetic detections hands each
track over as it ends and holds only the live ones; `iter_identify_video` reads a 100,000-frame
generator as it goes, names each track soon after it ends, in bounded memory (slow)."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from keras_faceset.gallery.tracks import FaceTracker

FRAMES, STEP, SHOT, GAP = 100_000, 20, 1_000, 100  # a new person every SHOT frames
MAX_MISSED, DIM = 5, 128


def detections(rng):
    """(frame, boxes, embeddings) of every STEP-th frame of a FRAMES-long video: shots of one
    person (a fresh identity walking 1 px a frame) separated by GAP faceless frames."""
    for frame in range(0, FRAMES, STEP):
        shot, at = divmod(frame, SHOT)
        if at >= SHOT - GAP:
            yield frame, np.zeros((0, 4)), np.zeros((0, DIM))
            continue
        identity = np.random.default_rng(shot).normal(size=DIM)
        x = 100 + at / 10
        box = np.array([[x, 50, x + 80, 150]])
        yield frame, box, identity + rng.normal(scale=0.1, size=(1, DIM))


def test_100000_frames_of_detections_are_tracked_in_bounded_memory_each_track_handed_over():
    tracker = FaceTracker(link_similarity=0.5, reid_similarity=0.8, max_missed=MAX_MISSED)
    handed, live_counts = [], []
    tracemalloc.start()
    try:
        for frame, boxes, embeddings in detections(np.random.default_rng(0)):
            tracker.update(frame, boxes, embeddings)
            for track in tracker.pop_ended():  # keep a summary: the test holds no track
                span = (track.first_frame, track.last_frame, track.detections, len(track.frames))
                handed.append((frame, track.track_id, span))
            live_counts.append(len(tracker.tracks()))
            if frame == 10_000:  # after ten shots: what the tracker holds from now on
                tracemalloc.reset_peak()
                settled = tracemalloc.get_traced_memory()[0]
        growth = tracemalloc.get_traced_memory()[1] - settled
    finally:
        tracemalloc.stop()
    assert tracker.pop_ended(end_live=True) == []  # the last shot ended before the video
    shots = FRAMES // SHOT
    # one track per shot, each handed over MAX_MISSED sampled frames after its last face
    assert [track_id for _, track_id, _ in handed] == list(range(shots))
    for shot, (when, _, span) in enumerate(handed):
        last = shot * SHOT + SHOT - GAP - STEP
        assert span[:3] == (shot * SHOT, last, (SHOT - GAP) // STEP)
        assert 32 < span[3] <= 64  # kept frames: at most max_frames, spread over the track
        assert when == last + MAX_MISSED * STEP
    assert max(live_counts) == 1 and tracker.tracks() == []
    # the ended tracks are not kept: 90 of them (45 frames of 128 floats each) take 2 MB
    assert growth < 300_000, growth


# --- the whole path, with the real dlib_resnet preset -------------------------------------


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError("VmRSS")


@pytest.mark.slow
def test_a_100000_frame_generator_is_identified_as_it_goes_in_bounded_memory(tmp_path):
    """Mostly blank 48 x 48 frames, with a shot of Serena Williams at frames 5,000-5,300 and
    of Colin Powell at 70,000-70,300 (250 x 250): two named tracks, each yielded long before
    the generator ends, and resident memory grows by less than 64 MB after the first 10,000
    frames, which have shown both kinds of frame (holding the frames would take 700 MB)."""
    from keras_faceset.embedder import FaceEmbedder
    from keras_faceset.gallery import Gallery
    from keras_faceset.gallery.identify import iter_identify_video
    from tests.cli.helpers import POWELL, SERENA_1, SERENA_2, photo, variants

    gallery = Gallery.create(tmp_path / "people", FaceEmbedder("dlib_resnet"))
    gallery.add("Serena Williams", variants(SERENA_1))
    gallery.add("Colin Powell", variants(POWELL))
    shots = {5_000: photo(SERENA_2), 70_000: photo(POWELL)[:, ::-1]}
    produced, rss = [0], []

    def video():
        for index in range(FRAMES):
            produced[0] = index + 1
            start = max((s for s in shots if s <= index), default=None)
            if start is not None and index < start + 300:
                yield np.roll(shots[start], (index - start) // 10, axis=1)
            else:
                yield np.full((48, 48, 3), 90 + index % 7, np.uint8)
            if index % 10_000 == 0 and index:
                rss.append(_rss())

    found = []
    for match in iter_identify_video(gallery, video(), step=STEP, name="long"):
        found.append((produced[0], match))
    assert produced[0] == FRAMES
    assert [m.identification.person for _, m in found] == ["Serena Williams", "Colin Powell"]
    for (when, match), start in zip(found, shots, strict=True):
        assert (match.first_frame, match.last_frame) == (start, start + 300 - STEP)
        assert match.source == "long" and match.detections == 300 // STEP
        # named within a chunk of 32 sampled frames of the track's end being known
        assert when <= match.last_frame + (MAX_MISSED + 32 + 1) * STEP
    growth = max(rss) - rss[0]
    print(f"G5 resident memory at every 10,000 frames: {[round(r / 1e6) for r in rss]} MB")
    assert len(rss) == FRAMES // 10_000 - 1
    assert growth < 64e6, [f"{r / 1e6:.0f} MB" for r in rss]
