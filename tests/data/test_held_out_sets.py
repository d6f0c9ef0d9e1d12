"""keras_faceset.data.held_out_sets: LFW-sets rules on DevTrain people kept out of training."""

import numpy as np
import pytest

from keras_faceset.data.devtrain_sets import select_images, training_people
from keras_faceset.data.held_out_sets import held_out_protocol
from keras_faceset.data.lfw import LFW
from keras_faceset.eval.protocol_cache import frames_digest
from tests.conftest import LFW_DIR, require
from tests.data.mini_devtrain import mini_devtrain


def test_held_out_pairs_reproduce_the_selection_pairs_and_skip_training_people(tmp_path):
    lfw = mini_devtrain(tmp_path)
    exclude = training_people(select_images(lfw, 60))
    clean = held_out_protocol(lfw, exclude)
    degraded = held_out_protocol(lfw, exclude, degraded=True)
    # digests of the lists the code that trained the shipped heads drew
    assert frames_digest(clean) == "ee43bc659034"
    assert frames_digest(degraded) == "2c73480de6b4"
    assert frames_digest(held_out_protocol(lfw, exclude, seed=1)) == "6ce7cb6a8f97"
    assert len(clean) == 800 and clean["same"].sum() == 400
    assert not (set(clean["name_a"]) | set(clean["name_b"])) & exclude
    assert (clean[["set_a", "set_b"]] == degraded[["set_a", "set_b"]]).all().all()


@pytest.mark.slow
def test_held_out_pairs_follow_the_lfw_sets_rules_on_unseen_devtrain_people():
    lfw = LFW(require(LFW_DIR))
    exclude = set(select_images(lfw, 2400).identity[:1000])
    clean = held_out_protocol(lfw, exclude)
    degraded = held_out_protocol(lfw, exclude, degraded=True)
    assert len(clean) == 800 and clean["same"].sum() == 400
    assert not (set(clean["name_a"]) | set(clean["name_b"])) & exclude
    sizes = clean["set_a"].map(len)
    assert sizes.between(2, 6).all() and (sizes == clean["set_b"].map(len)).all()
    assert 2.7 < sizes.mean() < 3.6  # LFW-sets 3.16; here 2.90; training split 3.20
    assert (clean["set_a"] == degraded["set_a"]).all()
    specs = [s for column in ("degrade_a", "degrade_b") for row in degraded[column] for s in row]
    assert 0.77 < np.mean([s is not None for s in specs]) < 0.83  # LFW-sets: 0.80
    assert all(0.3 <= s["severity"] <= 1.0 for s in specs if s is not None)
    assert all(s is None for row in clean["degrade_a"] for s in row)
