"""zoo/set_generalization.py --record-as: a head trained without a family is recorded under its
own model name, never over the shipped head's rows nor mean pooling's."""

import numpy as np
import pandas as pd
import pytest

from keras_faceset.eval.results import record_result
from tests.zoo.test_set_head_training import load_script

script = load_script("set_generalization")


def fake_report(accuracy: float) -> dict:
    return {
        "accuracy": accuracy,
        "std": 0.01,
        "auc": 0.99,
        "tar@far=0.01": 0.9,
        "tar@far=0.001": 0.8,
    }


@pytest.fixture
def fake_protocol(monkeypatch):
    """Two variants and a head whose report (accuracy 0.9) differs from mean pooling's (0.5)."""
    variant = {"same": np.ones(3, bool), "fold": np.zeros(3, int)}
    monkeypatch.setattr(script, "LFW", lambda data: data)
    monkeypatch.setattr(script, "lfw_variants", lambda *_: {"lfw_jpeg": variant})
    monkeypatch.setattr(
        script, "yale_variants", lambda *_: ({"yale_3+3": variant}, {"images": 6, "fallbacks": 0})
    )
    loaded = []

    def load_heads(names, weights, overrides=None):
        loaded.append(overrides)
        return dict.fromkeys(names, "head")

    monkeypatch.setattr(script, "load_heads", load_heads)
    result = {
        f"{kind}{m}": 0.0
        for m in script.METRICS
        for kind in ("", "mean_", "diff_", "low_", "high_")
    }
    monkeypatch.setattr(
        script,
        "compare",
        lambda *_: {**result, "report": fake_report(0.9), "mean_report": fake_report(0.5)},
    )
    return loaded


def test_record_as_names_the_head_rows_and_leaves_the_shipped_rows(tmp_path, fake_protocol):
    csv = tmp_path / "results.csv"
    shipped = script.result_row("qan_dlib", "lfw_jpeg", fake_report(0.7), 3, "shipped")
    record_result(csv, shipped)
    record_result(csv, {**shipped, "model": "mean_dlib"})
    weights = tmp_path / "heads" / "no_jpeg"
    script.main(
        [
            "--data",
            "lfw",
            "--cache",
            str(tmp_path / "cache"),
            "--yale",
            "yale",
            "--heads",
            "qan",
            "--weights",
            str(weights),
            "--record",
            str(csv),
            "--record-as",
            "qan_dlib_without_jpeg",
        ]
    )
    table = pd.read_csv(csv)
    rows = table[table["model"] == "qan_dlib_without_jpeg"]
    assert sorted(rows["protocol"]) == [
        "set_generalization_lfw_jpeg",
        "set_generalization_yale_3+3",
    ]
    assert (rows["accuracy"] == 0.9).all()
    assert rows["alignment"].tolist() == ["five_point", "preset"]
    assert all(
        "--weights /path/to/no_jpeg" in c and str(tmp_path) not in c for c in rows["command"]
    )
    # the shipped head's and mean pooling's rows are untouched; no mean pooling row was added
    others = table[table["model"] != "qan_dlib_without_jpeg"]
    assert sorted(others["model"]) == ["mean_dlib", "qan_dlib"]
    assert (others["accuracy"] == 0.7).all() and (others["command"] == "shipped").all()


def test_record_as_needs_record_and_one_head(tmp_path, fake_protocol, capsys):
    for extra in (["--heads", "qan,nan1", "--record", str(tmp_path / "r.csv")], ["--heads", "qan"]):
        with pytest.raises(SystemExit):
            script.main(["--data", "lfw", "--yale", "yale", "--record-as", "x", *extra])
        assert "--record-as names one head's rows" in capsys.readouterr().err


def test_head_kwargs_reach_the_heads_and_need_record_as(tmp_path, fake_protocol, capsys):
    csv = tmp_path / "r.csv"
    common = ["--data", "lfw", "--cache", str(tmp_path / "cache"), "--yale", "yale"]
    kwargs = ["--heads", "qan", "--head-kwargs", '{"temperature": 1}']
    with pytest.raises(SystemExit):
        script.main([*common, *kwargs, "--record", str(csv)])
    assert "record their rows under a name of their own" in capsys.readouterr().err
    assert not csv.exists() and fake_protocol == []
    script.main([*common, *kwargs, "--record", str(csv), "--record-as", "qan_dlib_t1"])
    assert fake_protocol == [{"temperature": 1}]
    assert set(pd.read_csv(csv)["model"]) == {"qan_dlib_t1"}


def test_load_heads_overrides_the_preset_kwargs():
    """`load_heads` builds the shipped heads with the overridden kwargs."""
    from keras_faceset.zoo.registry import SHIPPED_WEIGHTS

    heads = script.load_heads(["qan", "nan"], SHIPPED_WEIGHTS, {"temperature": 2.5})
    assert {name: head.temperature for name, head in heads.items()} == {"qan": 2.5, "nan": 2.5}
    assert script.load_heads(["nan1"], SHIPPED_WEIGHTS)["nan1"].temperature == (
        script.get_preset("nan1").head.kwargs.get("temperature", 1.0)
    )
