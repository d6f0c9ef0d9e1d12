"""zoo/set_generalization.py --variants: only the variants matching the patterns are measured
and recorded; a pattern matching none is an error naming the variants."""

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


def test_variants_option_records_only_the_selected_rows(tmp_path, fake_protocol, capsys):  # noqa: F811
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
