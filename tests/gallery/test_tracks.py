import numpy as np
import pytest

from keras_faceset.gallery.tracks import FaceTracker, box_iou


def brute_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def test_box_iou_equals_a_loop():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (12, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    a, b = boxes[:5], boxes[5:]
    expected = [[brute_iou(x, y) for y in b] for x in a]
    np.testing.assert_allclose(box_iou(a, b), expected, atol=1e-12)
    assert box_iou(a[:1], a[:1])[0, 0] == pytest.approx(1.0)
    assert box_iou([[0, 0, 1, 1]], [[2, 2, 3, 3]])[0, 0] == 0.0


def people(dim=16, count=3, seed=0):
    identities = np.random.default_rng(seed).normal(size=(count, dim))
    return identities / np.linalg.norm(identities, axis=1, keepdims=True)


def noisy(identity, rng, scale=0.15):
    return identity + rng.normal(scale=scale / np.sqrt(len(identity)), size=identity.shape)


def test_two_people_who_cross_keep_their_tracks():
    """Two faces walk towards each other and cross: at the crossing the boxes overlap both
    tracks, and the embeddings decide."""
    rng = np.random.default_rng(1)
    a, b = people(count=2)
    tracker = FaceTracker(link_similarity=0.5, reid_similarity=0.8)
    truth = []
    for frame in range(20):
        xa, xb = 10 + 5 * frame, 105 - 5 * frame
        boxes = np.array([[xb, 0, xb + 40, 40], [xa, 0, xa + 40, 40]], float)
        embeddings = np.stack([noisy(b, rng), noisy(a, rng)])
        ids = tracker.update(frame, boxes, embeddings)
        truth.append(ids)
    tracks = tracker.tracks()
    assert len(tracks) == 2
    assert all(ids == truth[0] for ids in truth)  # same ids on every frame
    assert [t.detections for t in tracks] == [20, 20]
    assert [(t.first_frame, t.last_frame) for t in tracks] == [(0, 19), (0, 19)]


def test_a_gap_within_max_missed_is_bridged_and_a_longer_one_ends_the_track():
    rng = np.random.default_rng(2)
    (a,) = people(count=1)
    box = np.array([[0, 0, 50, 50]], float)
    tracker = FaceTracker(link_similarity=0.5, reid_similarity=0.8, max_missed=3)
    for frame in range(6):  # missed on frames 3 and 4: two misses < 3
        seen = frame not in (3, 4)
        tracker.update(frame, box[:seen], noisy(a, rng)[None][:seen])
    assert len(tracker.tracks()) == 1
    for frame in (6, 7, 8):  # nothing seen: the track ends after 3 misses
        tracker.update(frame, np.zeros((0, 4)), np.zeros((0, 16)))
    tracker.update(9, box, noisy(a, rng)[None])
    tracks = tracker.tracks()
    assert [(t.first_frame, t.last_frame, t.detections) for t in tracks] == [(0, 5, 4), (9, 9, 1)]


def test_a_face_that_moves_far_links_only_when_it_is_clearly_the_same_person():
    rng = np.random.default_rng(3)
    a, b = people(count=2)
    near, far = np.array([[0, 0, 40, 40]], float), np.array([[200, 0, 240, 40]], float)
    tracker = FaceTracker(link_similarity=0.5, reid_similarity=0.8)
    tracker.update(0, near, noisy(a, rng)[None])
    assert tracker.update(1, far, noisy(a, rng)[None]) == [0]  # same person, jumped: re-id
    assert tracker.update(2, near, noisy(b, rng)[None]) == [1]  # a stranger in the old place
    # the same box as track 0's last one but a different person: never linked
    assert tracker.update(3, far, noisy(b, rng)[None]) == [1]


def test_kept_frames_are_bounded_and_spread_over_the_track():
    rng = np.random.default_rng(4)
    (a,) = people(count=1)
    tracker = FaceTracker(link_similarity=0.5, reid_similarity=0.8, max_frames=8)
    given = [3 * noisy(a, rng) for _ in range(100)]  # raw (not unit) embeddings are kept as is
    for frame, embedding in enumerate(given):
        tracker.update(frame, [[0, 0, 40, 40]], embedding[None], features=[[frame, -frame]])
    (track,) = tracker.tracks()
    assert track.detections == 100 and len(track.frames) <= 8
    assert track.frames[0] == 0 and track.frames[-1] >= 100 - 100 // 8
    assert np.all(np.diff(track.frames) > 0)
    for frame, embedding, features in zip(
        track.frames, track.embeddings, track.features, strict=True
    ):
        np.testing.assert_allclose(embedding, given[frame], rtol=1e-6)
        assert list(features) == [frame, -frame]


def test_bad_input_is_refused():
    tracker = FaceTracker(link_similarity=0.5, reid_similarity=0.8)
    tracker.update(3, [[0, 0, 1, 1]], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="frames must increase"):
        tracker.update(3, [[0, 0, 1, 1]], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="2 boxes and 1 embeddings"):
        tracker.update(4, [[0, 0, 1, 1], [2, 2, 3, 3]], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        tracker.update(5, [[0, 0, 1, 1]], [[np.nan, 0.0]])
    with pytest.raises(ValueError, match="link_similarity <= reid_similarity"):
        FaceTracker(link_similarity=0.9, reid_similarity=0.5)
    with pytest.raises(ValueError, match="max_frames"):
        FaceTracker(0.1, 0.5, max_frames=0)
