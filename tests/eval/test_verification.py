import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics

from keras_faceset.eval.verification import (
    accuracy_at_threshold,
    best_threshold,
    calibrate,
    eer,
    kfold_accuracy,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
    verification_report,
)


def _tied_scores(rng, n=400):
    """Overlapping classes with many ties (scores rounded to 0.05)."""
    labels = rng.random(n) < 0.4
    scores = np.round(rng.normal(labels * 1.0, 1.0) * 20) / 20
    return scores, labels


def test_roc_curve_matches_sklearn_with_ties(rng):
    scores, labels = _tied_scores(rng)
    assert np.unique(scores).size < len(scores) / 2
    fpr, tpr, thresholds = roc_curve(scores, labels)
    ref_fpr, ref_tpr, ref_thr = metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)
    np.testing.assert_array_equal(thresholds, ref_thr)
    # Distances: same curve, thresholds in distance units (declare same iff d <= t).
    d_fpr, d_tpr, d_thr = roc_curve(-scores, labels.astype(int), higher_is_same=False)
    np.testing.assert_allclose(d_fpr, fpr)
    np.testing.assert_allclose(d_tpr, tpr)
    np.testing.assert_array_equal(d_thr, -thresholds)


def test_roc_auc_matches_sklearn(rng):
    scores, labels = _tied_scores(rng)
    expected = metrics.roc_auc_score(labels, scores)
    assert roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(-scores, labels, higher_is_same=False) == pytest.approx(expected, abs=1e-12)
    # Mann-Whitney: P(score_pos > score_neg) + P(tie) / 2.
    pos, neg = scores[labels][:, None], scores[~labels][None, :]
    assert expected == pytest.approx(np.mean((pos > neg) + 0.5 * (pos == neg)), abs=1e-12)
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_eer_hand_computed():
    # ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1): the point (.5,.5) has FAR = FRR = 0.5.
    assert eer([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5)
    # A tied pair makes the segment (0,.5)-(.5,1), crossed halfway: FAR = FRR = 0.25.
    assert eer([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.25)
    assert eer([0.1, 0.5, 0.5, 0.9], [1, 1, 0, 0], higher_is_same=False) == pytest.approx(0.25)
    assert eer([0.2, 0.3, 0.8, 0.9], [0, 0, 1, 1]) == 0.0


def test_eer_matches_facenet_brentq(rng):
    labels = rng.random(300) < 0.5
    scores = rng.normal(labels * 1.5, 1.0)
    fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    expected = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert eer(scores, labels) == pytest.approx(expected, abs=1e-9)


def test_tar_at_far_hand_computed():
    negatives = np.arange(10) / 10  # 0.0 ... 0.9
    positives = np.array([0.95, 0.92, 0.85, 0.5, 0.3])
    scores = np.r_[negatives, positives]
    labels = np.r_[np.zeros(10, bool), np.ones(5, bool)]
    # Accepting >= 0.85 admits one negative (0.9): FAR 0.1, TAR 3/5.
    assert tar_at_far(scores, labels, 0.1) == pytest.approx(0.6)
    assert tar_at_far(scores, labels, 0.05) == pytest.approx(0.4)  # no negative allowed
    assert tar_at_far(scores, labels, 0.0) == pytest.approx(0.4)
    assert tar_at_far(scores, labels, 0.5) == pytest.approx(0.8)  # >= 0.5 admits 5 negatives
    assert tar_at_far(scores, labels, 1.0) == 1.0
    assert tar_at_far(1 - scores, labels, 0.1, higher_is_same=False) == pytest.approx(0.6)


def test_tar_at_far_matches_sklearn_roc(rng):
    scores, labels = _tied_scores(rng, 2000)
    fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    for far in (1e-3, 1e-2, 0.1, 0.37):
        assert tar_at_far(scores, labels, far) == pytest.approx(tpr[fpr <= far].max())


def test_best_threshold_hand_computed():
    assert best_threshold([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == (pytest.approx(0.25), 1.0)
    threshold, accuracy = best_threshold([0.4, 0.3, 0.2, 0.1], [0, 0, 1, 1], higher_is_same=False)
    assert (threshold, accuracy) == (pytest.approx(0.25), 1.0)
    # Candidates 1.5, 3.5 and 5.5 all reach 5/7: the middle one is chosen.
    threshold, accuracy = best_threshold(np.arange(1, 8.0), [0, 1, 0, 1, 0, 1, 1])
    assert threshold == 3.5 and accuracy == pytest.approx(5 / 7)
    # Two tied candidates (1.5 and 3.5): the lower middle.
    assert best_threshold(np.arange(1, 6.0), [0, 1, 0, 1, 1])[0] == 1.5
    # One class only: the extreme candidate that accepts (rejects) everything.
    assert best_threshold([0.3, 0.7], [1, 1]) == (-np.inf, 1.0)


def _brute_best(scores, labels):
    values = np.unique(scores)
    candidates = np.r_[-np.inf, (values[:-1] + values[1:]) / 2, np.inf]
    accuracy = np.array([np.mean((scores >= t) == labels) for t in candidates])
    tied = np.flatnonzero(accuracy == accuracy.max())
    return candidates[tied[(len(tied) - 1) // 2]], accuracy.max()


def test_best_threshold_matches_brute_force(rng):
    for _ in range(5):
        scores, labels = _tied_scores(rng, 150)
        expected_t, expected_acc = _brute_best(scores, labels)
        threshold, accuracy = best_threshold(scores, labels)
        assert threshold == pytest.approx(expected_t) and accuracy == pytest.approx(expected_acc)
        assert accuracy_at_threshold(scores, labels, threshold) == pytest.approx(expected_acc)


def test_kfold_accuracy_hand_computed():
    # Fold 0 trains on fold 1 -> threshold 0.5, 0.7 (negative) is accepted: 2/3.
    # Fold 1 trains on fold 0 -> threshold 0.75, both positives rejected: 1/3.
    scores = np.array([0.2, 0.8, 0.7, 0.4, 0.6, 0.65])
    labels = np.array([0, 1, 0, 0, 1, 1])
    folds = np.array([0, 0, 0, 1, 1, 1])
    for fold_spec in (folds, 2):
        result = kfold_accuracy(scores, labels, fold_spec)
        np.testing.assert_allclose(result.accuracies, [2 / 3, 1 / 3])
        np.testing.assert_allclose(result.thresholds, [0.5, 0.75])
        assert result.mean == pytest.approx(0.5) and result.std == pytest.approx(1 / 6)
    result = kfold_accuracy(-scores, labels, folds, higher_is_same=False)
    np.testing.assert_allclose(result.thresholds, [-0.5, -0.75])
    np.testing.assert_allclose(result.accuracies, [2 / 3, 1 / 3])


def test_kfold_accuracy_matches_brute_force(rng):
    scores, labels = _tied_scores(rng, 600)
    folds = np.repeat(np.arange(10), 60)
    result = kfold_accuracy(scores, labels, folds)
    expected = []
    for fold in range(10):
        test = folds == fold
        threshold, _ = _brute_best(scores[~test], labels[~test])
        expected.append(np.mean((scores[test] >= threshold) == labels[test]))
    np.testing.assert_allclose(result.accuracies, expected)
    assert result.mean == pytest.approx(np.mean(expected))
    assert result.std == pytest.approx(np.std(expected))


def test_kfold_accuracy_separable_is_perfect(rng):
    labels = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    scores = np.where(labels, rng.uniform(0.6, 1.0, 600), rng.uniform(-1.0, 0.4, 600))
    result = kfold_accuracy(scores, labels, 10)
    assert (result.mean, result.std) == (1.0, 0.0)
    assert np.all((result.thresholds > scores[~labels].max()) & (result.thresholds < 0.6))


def test_kfold_int_folds_follow_sklearn_kfold_sizes():
    # 7 pairs in 3 folds: blocks of 3, 2, 2 as sklearn.model_selection.KFold(3).
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6])
    labels = np.array([1, 0, 1, 0, 1, 0, 1])
    result = kfold_accuracy(scores, labels, 3)
    assert len(result.accuracies) == 3 and result.mean == 1.0


def test_verification_report(rng):
    scores, labels = _tied_scores(rng, 600)
    folds = np.repeat(np.arange(10), 60)
    report = verification_report(scores, labels, folds)
    kfold = kfold_accuracy(scores, labels, folds)
    assert report["accuracy"] == kfold.mean and report["std"] == kfold.std
    assert report["auc"] == pytest.approx(metrics.roc_auc_score(labels, scores))
    assert report["eer"] == eer(scores, labels)
    assert report["tar@far=0.01"] == tar_at_far(scores, labels, 0.01)
    assert set(report) == {
        "accuracy", "std", "auc", "eer", "tar@far=0.1", "tar@far=0.01", "tar@far=0.001",
        "threshold",
    }  # fmt: skip
    assert report["threshold"] == best_threshold(scores, labels)[0]
    fixed = verification_report(scores, labels, threshold=0.5)
    assert fixed["accuracy"] == accuracy_at_threshold(scores, labels, 0.5)
    assert np.isnan(fixed["std"]) and fixed["threshold"] == 0.5


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([0.1, 0.2], [0.0, 1.0], "bool or integer"),
        ([0.1, 0.2], [0, 2], "0 \\(different\\) or 1"),
        ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
        ([[0.1, 0.2]], [[0, 1]], "1-D"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, 0.2], [1, 1], "both same"),
        ([], [], "empty"),
    ],
)
def test_bad_inputs_raise(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        roc_auc(scores, labels)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="far must be in"):
        tar_at_far([0.1, 0.2], [0, 1], 1.5)
    with pytest.raises(ValueError, match="number of folds"):
        kfold_accuracy([0.1, 0.2], [0, 1], 3)
    with pytest.raises(ValueError, match="integer fold ids"):
        kfold_accuracy([0.1, 0.2], [0, 1], [0.0, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        kfold_accuracy([0.1, 0.2], [0, 1], [0, 0])


def test_threshold_at_far_and_calibrate_on_a_hand_case():
    # distances: same pairs 0.1 0.2 0.5; different pairs 0.3 0.6 0.7 0.8
    distances = np.array([0.1, 0.2, 0.5, 0.3, 0.6, 0.7, 0.8])
    same = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    # FAR <= 1/4 allows accepting one different pair (0.3): the loosest such cut is 0.5,
    # which accepts every same pair (TAR 1); FAR 0 stops at 0.2 (TAR 2/3).
    assert threshold_at_far(distances, same, 0.25, higher_is_same=False) == 0.5
    assert threshold_at_far(distances, same, 0.0, higher_is_same=False) == 0.2
    assert tar_at_far(distances, same, 0.0, higher_is_same=False) == pytest.approx(2 / 3)
    fitted = calibrate(distances, same, fars=(0.5, 0.25, 0.0))
    assert fitted == {"5e-01": 0.6, "2e-01": 0.5, "0e+00": 0.2}
    similarity = -distances
    assert threshold_at_far(similarity, same, 0.25) == -0.5


def test_measurable_fars_need_one_impostor_pair_per_far():
    from keras_faceset.eval.verification import measurable_fars

    assert measurable_fars(800) == (1e-2,)
    assert measurable_fars(1000) == (1e-2, 1e-3)
    assert measurable_fars(10_000) == (1e-2, 1e-3, 1e-4)
    assert measurable_fars(99) == ()
