import pandas as pd
import pytest

from keras_faceset.eval.results import COLUMNS, record_result


def row(model, accuracy, alignment="preset"):
    return {"model": model, "protocol": "lfw_view2", "alignment": alignment, "accuracy": accuracy}


def test_rows_are_added_and_a_rerun_replaces_its_own_row(tmp_path):
    path = tmp_path / "results.csv"
    record_result(path, row("facenet", 0.99))
    record_result(path, row("dlib_resnet", 0.98))
    record_result(path, row("facenet", 0.97, alignment="center"))
    record_result(path, row("facenet", 0.995))  # the same key again: replaced, not duplicated
    table = pd.read_csv(path)
    assert list(table.columns) == COLUMNS
    got = {(r.model, r.alignment): r.accuracy for r in table.itertuples()}
    assert got == {
        ("dlib_resnet", "preset"): 0.98,
        ("facenet", "center"): 0.97,
        ("facenet", "preset"): 0.995,
    }
    assert table.date.notna().all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".results.csv.lock", "results.csv"]


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown result columns \['acc'\]"):
        record_result(tmp_path / "r.csv", {"model": "x", "acc": 1.0})


def test_recorded_commands_carry_no_machine_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    command = (
        f"python zoo/x.py --data /home/someone/data/lfw --yale=../shared/data/extended_yaleb_dev "
        f"--record {tmp_path}/out/results.csv --seed 0 -v"
    )
    record_result(tmp_path / "r.csv", {**row("facenet", 0.99), "command": command})
    assert pd.read_csv(tmp_path / "r.csv").command[0] == (
        "python zoo/x.py --data /path/to/lfw --yale=/path/to/extended_yaleb_dev "
        "--record out/results.csv --seed 0 -v"
    )
