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
def test_bfloat16_row_is_recorded_with_its_command_and_within_a_tenth_of_a_point(model):
    float32, bfloat16 = _view2(model, "preset"), _view2(model, "preset+bfloat16")
    assert bfloat16["pairs"] == float32["pairs"] == 6000
    assert abs(bfloat16["accuracy"] - float32["accuracy"]) <= 0.001  # the documented claim
    command = bfloat16["command"]
    assert command.startswith(f"keras-faceset evaluate {model} lfw ")
    assert "--precision bfloat16" in command and "/path/to/lfw" in command
    assert "/work/" not in command and "/tmp/" not in command


def test_precision_rows_are_not_in_the_readme_table_and_do_not_change_it():
    results = zoo.results()
    float32_only = results[~results["alignment"].str.contains(readme_table.PRECISION_ROW)]
    assert len(float32_only) < len(results)
    assert readme_table.render(results) == readme_table.render(float32_only)
    assert "bfloat16" not in readme_table.render(results)


def test_precision_row_pattern():
    alignments = pd.Series(["preset+bfloat16", "preset+flip+int8", "preset", "preset+flip"])
    found = alignments[alignments.str.contains(readme_table.PRECISION_ROW)]
    assert list(found) == ["preset+bfloat16", "preset+flip+int8"]
