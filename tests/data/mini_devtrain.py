"""A DevTrain people file of 300 people with 2..14 images (no images): enough people for the
LFW-sets rules (10 folds x 40 + 40 pairs) on the held-out people."""

from pathlib import Path

from keras_faceset.data.lfw import LFW

PEOPLE = [(f"Person_{i:03d}", 2 + (5 * i) % 13) for i in range(300)]


def mini_devtrain(root: Path) -> LFW:
    lines = "".join(f"{name}\t{count}\n" for name, count in PEOPLE)
    (root / "peopleDevTrain.txt").write_text(f"{len(PEOPLE)}\n{lines}")
    lfw = LFW(root)
    lfw.image_dir.mkdir()
    return lfw
