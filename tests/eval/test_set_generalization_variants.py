"""zoo/set_generalization.py --variants: only the variants matching the patterns are measured
and recorded, a pattern matching none is an error naming the variants; --thresholds: the
presets' FAR 1e-2 thresholds go to `compare` and their FAR and TAR are printed."""

import argparse

import pandas as pd
import pytest

from tests.zoo.test_set_generalization_record import fake_protocol, script  # noqa: F401


def test_select_variants_keeps_protocol_order_and_refuses_an_unknown_pattern():
    variants = dict.fromkeys(
        ["lfw_clean", "lfw_blur", "lfw_blur_hard", "lfw_jpeg_hard", "yale_3+3"]
    )
    parser = argparse.ArgumentParser()
    assert list(script.select_variants(variants, ["yale_3+3", "lfw_*_hard"], parser)) == [
        "lfw_blur_hard",
        "lfw_jpeg_hard",
        "yale_3+3",
    ]
    assert list(script.select_variants(variants, ["*"], parser)) == list(variants)
    with pytest.raises(SystemExit):
        script.select_variants(variants, ["lfw_*", "lfw_fog"], parser)


@pytest.mark.usefixtures("fake_protocol")
def test_variants_option_records_only_the_selected_rows(tmp_path, capsys):
    csv = tmp_path / "results.csv"
    common = ["--data", "lfw", "--cache", str(tmp_path / "cache"), "--yale", "yale"]
    script.main([*common, "--heads", "qan", "--record", str(csv), "--variants", "yale_*"])
    table = pd.read_csv(csv)
    assert sorted(zip(table["model"], table["protocol"], strict=True)) == [
        ("mean_dlib", "set_generalization_yale_3+3"),
        ("qan_dlib", "set_generalization_yale_3+3"),
    ]
    with pytest.raises(SystemExit):
        script.main([*common, "--variants", "lfw_fog"])
    assert "--variants 'lfw_fog' matches none of lfw_jpeg, yale_3+3" in capsys.readouterr().err


@pytest.mark.usefixtures("fake_protocol")
def test_thresholds_option_prints_the_presets_far_and_tar(tmp_path, capsys, monkeypatch):
    seen = []

    def fake_compare(head, variant, resamples, seed, thresholds):
        seen.append(thresholds)
        rates = {"far@threshold": 0.25, "tar@threshold": 0.5}
        rates.update({f"mean_{k}": v / 2 for k, v in rates.items()})
        zero = {
            f"{kind}{m}": 0.0
            for m in script.METRICS
            for kind in ("", "mean_", "diff_", "low_", "high_")
        }
        return {**zero, **rates, "report": {}, "mean_report": {}}

    monkeypatch.setattr(script, "compare", fake_compare)
    common = ["--data", "lfw", "--cache", str(tmp_path / "cache"), "--yale", "yale"]
    script.main([*common, "--heads", "qan", "--variants", "yale_3+3", "--thresholds"])
    threshold = script.get_preset("qan").thresholds["1e-02"]
    assert seen == [(threshold, 0.0512)]
    assert (
        f"qan yale_3+3: at the FAR 1e-2 thresholds {threshold:.4f} (mean 0.0512): FAR 0.250 "
        "(mean 0.125), TAR 0.500 (mean 0.250)" in capsys.readouterr().out
    )
