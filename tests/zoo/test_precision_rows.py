"""LFW View 2 is recorded for each precision of the image presets (alignment ``preset+bfloat16``
beside float32's ``preset``), and those rows stay out of the README's float32 table."""

import pandas as pd
import pytest

from keras_faceset import zoo
from keras_faceset.zoo import readme_table

IMAGE_PRESETS = ("facenet", "dlib_resnet")


def _view2(model: str, alignment: str):
    results = zoo.results()
    rows = results[
        (results["model"] == model)
        & (results["protocol"] == "lfw_view2")
        & (results["alignment"] == alignment)
    ]
    assert len(rows) == 1, f"expected one lfw_view2 row of {model} {alignment}, got {len(rows)}"
    return rows.iloc[0]


@pytest.mark.parametrize("model", IMAGE_PRESETS)
@pytest.mark.parametrize("precision", ["bfloat16", "int8", "int8-dynamic"])
def test_each_precision_row_is_recorded_with_the_command_that_measured_it(model, precision):
    row = _view2(model, f"preset+{precision}")
    assert row["pairs"] == 6000
    command = row["command"]
    assert command.startswith(f"keras-faceset evaluate {model} lfw ")
    assert f"--precision {precision}" in command and "/path/to/lfw" in command
    assert "/work/" not in command and "/tmp/" not in command


# What docs/performance.md and the --precision help say: LFW View 2 change against float32
# (accuracy points), within one pair of 6,000 either way.
DOCUMENTED_CHANGE = {
    ("facenet", "bfloat16"): 0.03,
    ("dlib_resnet", "bfloat16"): 0.03,
    ("facenet", "int8"): 0.17,
    ("dlib_resnet", "int8"): -0.18,
    ("facenet", "int8-dynamic"): 0.03,
    ("dlib_resnet", "int8-dynamic"): -0.07,
}


@pytest.mark.parametrize(("model", "precision"), list(DOCUMENTED_CHANGE))
def test_the_documented_lfw_change_per_precision(model, precision):
    float32, other = _view2(model, "preset"), _view2(model, f"preset+{precision}")
    change = 100 * (other["accuracy"] - float32["accuracy"])
    assert change == pytest.approx(DOCUMENTED_CHANGE[model, precision], abs=1 / 60)


def test_precision_rows_are_not_in_the_readme_table_and_do_not_change_it():
    results = zoo.results()
    float32_only = results[~results["alignment"].str.contains(readme_table.PRECISION_ROW)]
    assert len(float32_only) < len(results)
    assert readme_table.render(results) == readme_table.render(float32_only)
    assert "bfloat16" not in readme_table.render(results)


def test_precision_row_pattern():
    alignments = pd.Series(
        ["preset+bfloat16", "preset+flip+int8", "preset", "preset+flip", "preset+int8-dynamic"]
    )
    found = alignments[alignments.str.contains(readme_table.PRECISION_ROW)]
    assert list(found) == ["preset+bfloat16", "preset+flip+int8", "preset+int8-dynamic"]
