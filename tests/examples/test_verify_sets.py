"""examples/verify_sets.py on real LFW sets."""

import importlib.util

import numpy as np
import pytest

from keras_faceset.data.inputs import image_paths
from keras_faceset.embedder import FaceEmbedder
from tests.conftest import REPO


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_same_person_sets_are_closer_and_weights_are_printed(set_root, capsys):
    verify_sets = load_example("verify_sets")
    powell, blair = set_root / "Colin_Powell", set_root / "Tony_Blair"
    same = verify_sets.main([str(powell / "set0"), str(powell / "set1")])
    printed = capsys.readouterr().out
    different = verify_sets.main([str(powell / "set0"), str(blair / "set0")])
    assert same < different

    weights = [float(line.split()[0]) for line in printed.splitlines() if line.startswith("  ")]
    assert len(weights) == 8
    np.testing.assert_allclose([sum(weights[:4]), sum(weights[4:])], 1.0, atol=2e-3)
    a, _ = FaceEmbedder("nan").embed_set(image_paths([powell / "set0"]))
    b, _ = FaceEmbedder("nan").embed_set(image_paths([powell / "set1"]))
    assert same == pytest.approx(1.0 - float(np.dot(a, b)), abs=1e-6)
