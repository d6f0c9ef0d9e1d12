"""Held-out set pairs: the LFW-sets rules applied to DevTrain people kept out of training.

Set heads trained on DevTrain (`keras_faceset.data.devtrain_sets`) are selected on these pairs,
so that LFW-sets itself (built from DevTest) is never looked at before the final evaluation.
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

from keras_faceset.data.lfw import LFW
from keras_faceset.data.lfw_sets import make_lfw_sets


def held_out_protocol(
    lfw: LFW, exclude: Collection[str], seed: int = 0, degraded: bool = False
) -> pd.DataFrame:
    """An LFW-sets pair list (`keras_faceset.data.lfw_sets.COLUMNS`) on DevTrain people.

    The LFW-sets rules (10 folds x 40 genuine + 40 impostor pairs, k ~ U{2..min(6, n // 2)},
    impostor sizes a shuffle of the genuine ones; `degraded`: 80 % of frames degraded with
    severity ~ U[0.3, 1]) on the DevTrain people with >= 4 images not in `exclude` (the training
    people), with the random streams `[seed, 10]` (pairs) and `[seed, 11]` (degradations).
    """
    return make_lfw_sets(lfw, seed, degraded, exclude=exclude, streams=(10, 11), split="dev_train")
