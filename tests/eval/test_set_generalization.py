"""keras_faceset.eval.set_generalization: Yale B set pairs, the LFW variants' pair lists and the
paired bootstrap against mean pooling."""

import numpy as np
import pandas as pd
import pytest

from keras_faceset.data.degrade import KINDS
from keras_faceset.data.lfw import LFW
from keras_faceset.eval import set_generalization as sg
from keras_faceset.eval.verification import kfold_accuracy, tar_at_far
from tests.conftest import LFW_DIR, require
from tests.eval.set_variant_base import degraded_features, two_set_base


def test_extreme_light_is_the_azimuth_or_elevation_bound():
    assert not sg.extreme_light(0, 0) and not sg.extreme_light(-35, -40)
    assert sg.extreme_light(60, 0) and sg.extreme_light(-110, 15) and sg.extreme_light(5, -45)


def test_yale_images_parse_the_light_from_the_file_name(tmp_path):
    for name in ("yaleB02_P00A-110E+15.png", "yaleB02_P00A+005E-10.png", "notes.png"):
        (tmp_path / name).write_bytes(b"")
    images = sg.yale_images(tmp_path)
    assert images[["person", "azimuth", "elevation", "extreme"]].values.tolist() == [
        ["yaleB02", 5, -10, False],
        ["yaleB02", -110, 15, True],
    ]
    with pytest.raises(FileNotFoundError, match="no Extended Yale B images"):
        sg.yale_images(tmp_path / "none")


def fake_yale(people=4, near=8, extreme=10) -> pd.DataFrame:
    rows = [
        (f"p{p}/{i}.png", f"yaleB{p:02d}", 0, 0, i >= near)
        for p in range(people)
        for i in range(near + extreme)
    ]
    return pd.DataFrame(rows, columns=["path", "person", "azimuth", "elevation", "extreme"])


@pytest.mark.parametrize("mixed", [True, False])
def test_yale_pairs_half_genuine_disjoint_sets_of_six(mixed):
    images = fake_yale()
    rows_a, rows_b, same, fold = sg.yale_pairs(images, mixed, pairs=200, seed=1)
    assert len(rows_a) == len(rows_b) == 200 and same.sum() == 100
    assert np.bincount(fold).tolist() == [20] * 10
    person = images["person"].to_numpy()
    extreme = images["extreme"].to_numpy()
    for a, b, genuine in zip(rows_a, rows_b, same, strict=True):
        assert len(set(a)) == len(set(b)) == 6
        assert len(set(person[a])) == len(set(person[b])) == 1
        assert (person[a[0]] == person[b[0]]) == genuine
        if genuine:
            assert not set(a) & set(b)
        if mixed:
            assert extreme[a].sum() == extreme[b].sum() == 3
    again = sg.yale_pairs(images, mixed, pairs=200, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(rows_a, again[0], strict=True))


def test_paired_bootstrap_of_a_method_against_itself_is_exactly_zero(rng):
    same = np.repeat([True, False], 100)
    scores = rng.normal(size=200) + same
    fold = np.arange(200) % 10
    out = sg.paired_bootstrap(scores, scores, same, fold, resamples=50)
    for metric in sg.METRICS:
        assert out[metric] == out[f"mean_{metric}"]
        assert out[f"diff_{metric}"] == out[f"low_{metric}"] == out[f"high_{metric}"] == 0.0
    assert out["accuracy"] == kfold_accuracy(scores, same, fold).mean
    assert out["tar@far=0.01"] == tar_at_far(scores, same, 0.01)


def test_paired_bootstrap_interval_excludes_zero_only_for_a_clear_win(rng):
    same = np.repeat([True, False], 300)
    fold = np.arange(600) % 10
    noise = rng.normal(size=600)
    weak, strong = noise + 0.5 * same, noise + 3.0 * same
    win = sg.paired_bootstrap(strong, weak, same, fold, resamples=60)
    assert win["low_accuracy"] > 0 and win["low_tar@far=0.01"] > 0
    assert win["diff_accuracy"] == pytest.approx(
        kfold_accuracy(strong, same, fold).mean - kfold_accuracy(weak, same, fold).mean
    )
    # one pair's worth of difference: an interval around 0
    nudged = weak.copy()
    nudged[0] += 0.01
    tie = sg.paired_bootstrap(nudged, weak, same, fold, resamples=60)
    assert tie["low_accuracy"] <= 0 <= tie["high_accuracy"]
    again = sg.paired_bootstrap(strong, weak, same, fold, resamples=60)
    assert again == win  # seeded


@pytest.mark.slow
def test_lfw_protocols_1000_pairs_on_people_outside_devtrain():
    require(LFW_DIR)
    lfw = LFW(LFW_DIR)
    protocols = sg.lfw_protocols(lfw)
    assert list(protocols) == ["lfw_clean", *(f"lfw_{k}" for k in KINDS)]
    train = set(lfw.people("dev_train")["name"])
    clean = protocols["lfw_clean"]
    assert len(clean) == 1000 and clean["same"].sum() == 500
    assert not (set(clean["name_a"]) | set(clean["name_b"])) & train
    for kind in KINDS:
        pairs = protocols[f"lfw_{kind}"]
        assert pairs[["fold", "same", "set_a", "set_b"]].equals(
            clean[["fold", "same", "set_a", "set_b"]]
        )
        specs = [s for side in ("degrade_a", "degrade_b") for row in pairs[side] for s in row]
        degraded = [s for s in specs if s is not None]
        assert {s["kind"] for s in degraded} == {kind}
        assert 0.45 < len(degraded) / len(specs) < 0.55
        assert min(s["severity"] for s in degraded) >= 0.3


def test_composed_variant_points_degraded_frames_at_their_twice_degraded_rows(monkeypatch):
    """Frames 1 and 3 of the base table are degraded: the composed variant appends their
    twice-degraded embeddings and its sets use those rows; clean frames keep theirs."""
    union, base = two_set_base([0.0, 0.5, 0.0, 0.7], [0, 1, 0, 2])
    seen = {}

    def fake(frames, columns, degrade, lfw, chips, path, label):
        seen["frames"] = frames
        return degraded_features(frames)

    monkeypatch.setattr(sg, "_cached_degraded_embeddings", fake)
    out = sg._composed(base, union, "noise", lfw=None, cache="unused", chips=None, seed=0)
    frames = seen["frames"]
    assert frames["path"].tolist() == ["a.jpg", "b.jpg"]
    assert (frames["kind_id2"] == KINDS.index("noise")).all()
    assert frames["severity2"].between(*sg.SEVERITY).all()
    assert [r.tolist() for r in out["rows_a"]] == [[0, 4]]
    assert [r.tolist() for r in out["rows_b"]] == [[2, 5]]
    assert out["embedding"][[0, 4, 2, 5], 0].tolist() == [0.0, 10.0, 2.0, 11.0]
    assert out["severity"][4] == pytest.approx(0.5 + frames["severity2"][0])


def mini_devtest(root) -> LFW:
    """People files only: 300 DevTest people with 4..14 images, enough for 10 folds x 50 + 50
    pairs; an empty DevTrain."""
    people = [(f"Person_{i:03d}", 4 + (5 * i) % 11) for i in range(300)]
    lines = "".join(f"{name}\t{count}\n" for name, count in people)
    (root / "peopleDevTest.txt").write_text(f"{len(people)}\n{lines}")
    (root / "peopleDevTrain.txt").write_text("0\n")
    return LFW(root)


def test_hard_variants_degrade_more_frames_more_strongly_with_the_same_draws(tmp_path, monkeypatch):
    """``lfw_<family>_hard`` has the pairs of ``lfw_<family>``; each frame degraded there is
    degraded here with the same kind and seed, at the severity its draw maps to in
    `HARD_SEVERITY`; about `HARD_DEGRADE_PROBABILITY` of the frames are degraded."""
    kinds = ("blur", "occlusion")  # two of the six keep the test fast
    monkeypatch.setattr(sg, "FAMILIES", kinds)
    lfw = mini_devtest(tmp_path)
    base, hard = sg.lfw_protocols(lfw), sg.lfw_protocols(lfw, hard=True)
    assert list(hard) == [f"lfw_{k}_hard" for k in kinds]
    (low, high), (hard_low, hard_high) = sg.SEVERITY, sg.HARD_SEVERITY
    for kind in kinds:
        pairs, harder = base[f"lfw_{kind}"], hard[f"lfw_{kind}_hard"]
        assert len(harder) == 1000 and harder["same"].sum() == 500
        assert harder.iloc[:, :6].equals(pairs.iloc[:, :6])
        specs = [s for side in ("degrade_a", "degrade_b") for row in pairs[side] for s in row]
        hards = [s for side in ("degrade_a", "degrade_b") for row in harder[side] for s in row]
        degraded = [s for s in hards if s is not None]
        assert 0.77 < len(degraded) / len(hards) < 0.83
        assert {s["kind"] for s in degraded} == {kind}
        assert all(hard_low <= s["severity"] <= hard_high for s in degraded)
        for spec, harder_spec in zip(specs, hards, strict=True):
            if spec is not None:
                assert harder_spec["seed"] == spec["seed"]
                draw = (spec["severity"] - low) / (high - low)
                expected = hard_low + (hard_high - hard_low) * draw
                assert harder_spec["severity"] == pytest.approx(expected, abs=2e-3)


def test_threshold_rates_accept_a_distance_at_or_below_the_threshold():
    scores = np.array([0.75, 0.5, 0.875, 0.25, 0.75, 0.5])  # distances 0.25, 0.5, 0.125, ...
    same = np.array([True, True, True, False, False, False])
    assert sg.threshold_rates(scores, same, 0.25) == (1 / 3, 2 / 3)
    assert sg.threshold_rates(scores, same, 0.5) == (2 / 3, 1.0)
    assert sg.threshold_rates(scores, same, 0.0) == (0.0, 0.0)


def random_variant(rng, embeddings: np.ndarray, pairs: int) -> dict:
    """A variant of `pairs` set pairs (3 frames against 2, drawn from `embeddings`), the
    first half genuine, 10 folds."""
    frames = len(embeddings)
    return {
        "rows_a": [rng.choice(frames, 3, replace=False) for _ in range(pairs)],
        "rows_b": [rng.choice(frames, 2, replace=False) for _ in range(pairs)],
        "same": np.arange(pairs) < pairs // 2,
        "fold": np.arange(pairs) % 10,
        "embedding": embeddings,
    }


def test_compare_with_thresholds_gives_each_method_its_far_and_tar(rng):
    embeddings = rng.normal(size=(12, 4)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    variant = random_variant(rng, embeddings, 40)
    rows_a, rows_b = variant["rows_a"], variant["rows_b"]
    out = sg.compare(None, variant, resamples=5, thresholds=(0.6, 0.3))  # mean pooling twice
    unit = (
        [embeddings[r].mean(axis=0) for r in rows_a],
        [embeddings[r].mean(axis=0) for r in rows_b],
    )
    a, b = (np.array(u) / np.linalg.norm(u, axis=1, keepdims=True) for u in unit)
    distance = 1.0 - np.sum(a * b, axis=1)
    for prefix, threshold in (("", 0.6), ("mean_", 0.3)):
        accept = distance <= threshold
        assert out[f"{prefix}far@threshold"] == pytest.approx(accept[20:].mean())
        assert out[f"{prefix}tar@threshold"] == pytest.approx(accept[:20].mean())
    assert "far@threshold" not in sg.compare(None, variant, resamples=5)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_residual_oracle_weights_are_inverse_residuals_to_the_other_images_centre(rng):
    paths = np.array(["p1/a.jpg", "p1/b.jpg", "p1/c.jpg", "p2/d.jpg", "p2/e.jpg"])
    clean = {"embedding": rng.normal(size=(5, 4)), "severity": np.zeros(5), "path": paths}
    frames = rng.integers(0, 5, size=9)
    variant = {"embedding": rng.normal(size=(9, 4)), "path": paths[frames]}
    out = sg.residual_oracle_weights(variant, clean)
    unit = _unit(clean["embedding"])
    for k, image in enumerate(frames):
        person = paths[image].split("/")[0]
        centre = sum(unit[i] for i in range(5) if paths[i].startswith(person) and i != image)
        residual = 1 - _unit(variant["embedding"][k]) @ _unit(centre)
        assert out[k] == pytest.approx(1 / residual, rel=1e-9)


def test_set_scores_with_frame_weights_score_the_weighted_mean(rng):
    embeddings = rng.normal(size=(10, 4))
    weights = rng.uniform(0.1, 2.0, size=10)
    variant = random_variant(rng, embeddings, 20)
    rows_a, rows_b = variant["rows_a"], variant["rows_b"]
    scores, _ = sg.set_scores(weights, variant)
    unit = _unit(embeddings)
    for i, (a, b) in enumerate(zip(rows_a, rows_b, strict=True)):
        set_a = _unit(sum(weights[k] * unit[k] for k in a))
        set_b = _unit(sum(weights[k] * unit[k] for k in b))
        assert scores[i] == pytest.approx(set_a @ set_b, rel=1e-9)
    uniform, _ = sg.set_scores(np.ones(10), variant)
    np.testing.assert_allclose(uniform, sg.set_scores(None, variant)[0], rtol=1e-12)
