"""A small folder of real LFW sets for the examples' tests."""

import pytest

from tests.conftest import LFW_DIR, require

PEOPLE = ["Colin_Powell", "Donald_Rumsfeld", "Gerhard_Schroeder", "Tony_Blair", "Ariel_Sharon"]


@pytest.fixture
def set_root(tmp_path):
    """root/<person>/<set>/<frames>: each person's first 8 images as two sets of 4."""
    images = require(LFW_DIR / "lfw-deepfunneled")
    for person in PEOPLE:
        for index in range(8):
            folder = tmp_path / "sets" / person / f"set{index // 4}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{person}_{index + 1:04d}.jpg"
            (folder / name).symlink_to(images / person / name)
    return tmp_path / "sets"
