import numpy as np
import pytest

from keras_faceset.eval.report import plot_score_histogram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_histogram_png_and_counts(rng, tmp_path):
    labels = rng.random(500) < 0.3
    scores = rng.normal(labels * 1.5, 1.0)
    hist = plot_score_histogram(
        scores,
        labels.astype(int),
        tmp_path / "hist.png",
        bins=20,
        xlabel="cosine similarity",
        title="toy",
    )
    data = hist.path.read_bytes()
    assert hist.path == tmp_path / "hist.png"
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1024
    edges = np.histogram_bin_edges(scores, 20)
    np.testing.assert_array_equal(hist.edges, edges)
    np.testing.assert_array_equal(hist.same, np.histogram(scores[labels], edges)[0])
    np.testing.assert_array_equal(hist.different, np.histogram(scores[~labels], edges)[0])
    assert (hist.same.sum(), hist.different.sum()) == (labels.sum(), (~labels).sum())


def test_histogram_auto_bins_and_bad_labels(tmp_path):
    hist = plot_score_histogram(
        [0.1, 0.2, 0.9, 0.95], [0, 0, 1, 1], tmp_path / "h.png", bins="auto"
    )
    assert hist.same.sum() == 2 and hist.different.sum() == 2
    with pytest.raises(ValueError, match="differ in length"):
        plot_score_histogram([0.1, 0.2], [1], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
