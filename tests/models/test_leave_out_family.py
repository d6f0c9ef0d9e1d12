"""zoo/train_set_heads.py --leave-out: the training sets never hold the left-out family."""

import numpy as np
import pandas as pd

from keras_faceset.data.degrade import KINDS
from keras_faceset.data.devtrain_sets import frame_index, sample_sets, training_frames
from tests.zoo.test_set_head_training import load_script

training = load_script("train_set_heads")


def test_left_out_frames_become_the_images_clean_frame_and_are_never_sampled():
    images = pd.DataFrame({"path": [f"p{i}.jpg" for i in range(40)], "identity": ["a"] * 40})
    frames = training_frames(images, versions=4)
    index = frame_index(frames)
    out = training.leave_out(index, frames, "occlusion")
    kind = frames["kind_id"].to_numpy()
    left = kind[index[:, 1:]] == KINDS.index("occlusion")
    assert left.any() and (~left).any()
    np.testing.assert_array_equal(out[:, 1:][left], np.repeat(index[:, :1], 4, 1)[left])
    np.testing.assert_array_equal(out[:, 1:][~left], index[:, 1:][~left])
    np.testing.assert_array_equal(out[:, 0], index[:, 0])
    people = [np.arange(i, i + 4) for i in range(0, 40, 4)]
    rows, mask, _ = sample_sets(out, people, 5, 20, np.random.default_rng(0))
    sampled = rows[mask]
    degraded = frames["severity"].to_numpy()[sampled] > 0
    assert degraded.any()
    assert not (kind[sampled][degraded] == KINDS.index("occlusion")).any()
