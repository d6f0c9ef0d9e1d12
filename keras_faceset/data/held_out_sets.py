"""Held-out set pairs: the LFW-sets rules applied to DevTrain people kept out of training.

Set heads trained on DevTrain (`keras_faceset.data.devtrain_sets`) are selected on these pairs,
so that LFW-sets itself (built from DevTest) is never looked at before the final evaluation.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from keras_faceset.data import lfw_sets
from keras_faceset.data.lfw import LFW


def held_out_protocol(
    lfw: LFW, exclude: Collection[str], seed: int = 0, degraded: bool = False
) -> pd.DataFrame:
    """An LFW-sets pair list (`keras_faceset.data.lfw_sets.COLUMNS`) on DevTrain people.

    The LFW-sets rules (10 folds x 40 genuine + 40 impostor pairs, k ~ U{2..min(6, n // 2)},
    impostor sizes a shuffle of the genuine ones; `degraded`: 80 % of frames degraded with
    severity ~ U[0.3, 1]) on the DevTrain people with >= 4 images not in `exclude` (the training
    people), with the random streams `[seed, 10]` (pairs) and `[seed, 11]` (degradations).
    """
    params = {**lfw_sets.DEFAULTS, "split": "dev_train"}
    people = lfw.people("dev_train")
    people = people[(people["count"] >= params["min_images"]) & ~people["name"].isin(exclude)]
    names = people["name"].sort_values().tolist()
    counts = people.set_index("name").loc[names, "count"].to_numpy()
    rng = np.random.default_rng([seed, 10])
    # lfw_sets' fold dealing, pair drawing and degradation draws, shared with make_lfw_sets
    folds = lfw_sets._deal_folds(counts, params["num_folds"], rng)
    records = []
    for fold in range(params["num_folds"]):
        members = np.flatnonzero(folds == fold)
        fold_names = [names[i] for i in members]
        for same, a, b, numbers_a, numbers_b in lfw_sets._fold_pairs(
            fold_names, counts[members], params["pairs_per_fold"], params, rng
        ):
            sets = [
                [lfw_sets._relative(lfw, fold_names[person], n) for n in numbers]
                for person, numbers in ((a, numbers_a), (b, numbers_b))
            ]
            records.append((fold, same, fold_names[a], fold_names[b], *sets))
    pairs = pd.DataFrame.from_records(records, columns=lfw_sets.COLUMNS[:6])
    lengths = [len(s) for pair in zip(pairs["set_a"], pairs["set_b"], strict=True) for s in pair]
    if degraded:
        specs = lfw_sets._degrade_specs(lengths, params, np.random.default_rng([seed, 11]))
    else:
        specs = [[None] * length for length in lengths]
    pairs["degrade_a"], pairs["degrade_b"] = specs[0::2], specs[1::2]
    return pairs
