"""zoo/train_set_heads.py --leave-out: the held-out pairs that choose the epoch never hold the
left-out family either (its frames become the clean image; everything else is unchanged)."""

import numpy as np

from keras_faceset.data import lfw_sets
from keras_faceset.data.degrade import KINDS
from keras_faceset.data.devtrain_sets import select_images, training_people
from keras_faceset.data.held_out_sets import held_out_protocol
from tests.data.mini_devtrain import mini_devtrain
from tests.zoo.test_set_head_training import load_script

training = load_script("train_set_heads")


def test_validation_pairs_without_a_family_keep_pairs_sets_and_other_frames(tmp_path):
    lfw = mini_devtrain(tmp_path)
    pairs = held_out_protocol(lfw, training_people(select_images(lfw, 60)), degraded=True)
    out = training.without_family(pairs, "jpeg")
    assert (out[["fold", "same", "name_a", "name_b", "set_a", "set_b"]] == pairs.iloc[:, :6]).all(
        axis=None
    )
    before = [s for column in ("degrade_a", "degrade_b") for row in pairs[column] for s in row]
    after = [s for column in ("degrade_a", "degrade_b") for row in out[column] for s in row]
    jpeg = np.array([s is not None and s["kind"] == "jpeg" for s in before])
    assert 0.1 < jpeg.mean() < 0.17  # 80 % degraded, uniform over the six families
    assert all(s is None for s, left in zip(after, jpeg, strict=True) if left)
    assert all(a == b for a, b, left in zip(after, before, jpeg, strict=True) if not left)
    # the embedded frames: each left-out frame is the clean frame of the same image
    frames, rows_a, rows_b = lfw_sets.protocol_frames(out)
    rows = np.concatenate(rows_a + rows_b)
    paths = [p for column in ("set_a", "set_b") for row in pairs[column] for p in row]
    assert list(frames["path"].to_numpy()[rows]) == paths
    was_clean = np.array([s is None for s in before])
    np.testing.assert_array_equal(frames["severity"].to_numpy()[rows] == 0, was_clean | jpeg)
    assert not (frames["kind_id"] == KINDS.index("jpeg")).any()
