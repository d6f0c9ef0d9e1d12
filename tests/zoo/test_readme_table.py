"""The README's zoo table is written from results.csv and agrees with it."""

from keras_faceset import zoo
from keras_faceset.zoo import readme_table
from tests.conftest import REPO


def test_the_readme_table_is_the_one_written_from_results_csv():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_table.readme_table(readme) == readme_table.render(), (
        f"README.md's zoo table differs from results.csv: run `{readme_table.COMMAND}`"
    )


def test_a_changed_figure_changes_the_table_and_check_fails(tmp_path, capsys):
    results = zoo.results()
    nan = (results["model"] == "nan2_dlib") & (results["protocol"] == "lfw_sets_degraded")
    assert "| **0.9325 / 0.8775** |" in readme_table.render(results)
    results.loc[nan, "tar@far=1e-2"] = 0.9425
    assert "| **0.9425 / 0.8775** |" in readme_table.render(results)

    readme = tmp_path / "README.md"
    text = f"# x\n\n{readme_table.BEGIN}\n| stale |\n{readme_table.END}\n\nafter\n"
    readme.write_text(text, encoding="utf-8")
    assert readme_table.main([str(readme), "--check"]) == 1
    assert readme_table.main([str(readme)]) == 0
    written = readme.read_text(encoding="utf-8")
    assert written.startswith("# x\n\n") and written.endswith(f"{readme_table.END}\n\nafter\n")
    assert readme_table.readme_table(written) == readme_table.render()
    assert readme_table.main([str(readme), "--check"]) == 0
    assert "differs from results.csv" in capsys.readouterr().out


def test_figures_are_formatted_from_the_rows():
    table = readme_table.render()
    rows = {line.split(" | ")[0]: line for line in table.splitlines()[2:]}
    assert "**99.30 ± 0.28 %** MTCNN-aligned + `--flip`" in rows["| `facenet`"]
    assert "98.95 ± 0.31 % MTCNN-aligned," in rows["| `dlib_resnet`"]
    assert "0.870 / 0.790 (mean of frames)" in rows["| `dlib_resnet`"]
    assert "| **0.965 / 0.8925** | 1.000 / 0.9975 |" in rows["| `qan`"]
    assert set(rows) == {f"| `{name}`" for name in zoo.PRESETS}
