"""A base variant of two sets of two frames each (frames 1 and 3 degraded) and a stand-in for
`set_generalization._cached_degraded_embeddings`, shared by the composed and unseen variant
tests."""

import numpy as np
import pandas as pd

FEATURES = ("embedding", "pooled", "texture")


def two_set_base(severity: list[float], seed1: list[int]) -> tuple[pd.DataFrame, dict]:
    """Frame table `union` (a.jpg twice, b.jpg twice) and the base variant built on it: frame
    k's features are k, sets a = frames 0, 1 and b = frames 2, 3, one impostor pair."""
    union = pd.DataFrame(
        {
            "path": ["a.jpg", "a.jpg", "b.jpg", "b.jpg"],
            "kind_id": [0, 0, 0, 0],
            "severity": severity,
            "seed0": [0, 1, 0, 2],
            "seed1": seed1,
        }
    )
    arrays = {key: np.arange(4.0)[:, None] * [[1, 1]] for key in FEATURES}
    base = {
        "rows_a": [np.array([0, 1])],
        "rows_b": [np.array([2, 3])],
        "same": np.array([False]),
        "fold": np.array([0]),
        "severity": union["severity"].to_numpy(),
        "path": union["path"].to_numpy(),
        **arrays,
    }
    return union, base


def degraded_features(frames: pd.DataFrame) -> dict:
    """What the cache would give for the re-degraded frames: frame i's features are 10 + i."""
    return {key: 10.0 + np.arange(len(frames))[:, None] * [[1, 1]] for key in FEATURES}
