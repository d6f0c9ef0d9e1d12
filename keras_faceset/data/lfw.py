"""Labeled Faces in the Wild, deep-funneled images, and its official protocol files.

Huang et al., "Labeled Faces in the Wild", UMass TR 07-49 (2007): 13,233 images (250x250) of
5,749 people. View 1 (development): ``pairsDevTrain.txt`` / ``pairsDevTest.txt`` and
``peopleDevTrain.txt`` / ``peopleDevTest.txt``. View 2 (reporting): ``pairs.txt``, 10 folds of
300 matched + 300 mismatched pairs, and ``people.txt``, the same 10 folds as lists of people.

Expected layout of the data folder::

    <data_dir>/lfw-deepfunneled/<Name>/<Name>_<NNNN>.jpg
    <data_dir>/pairs.txt, pairsDevTrain.txt, pairsDevTest.txt,
    <data_dir>/people.txt, peopleDevTrain.txt, peopleDevTest.txt
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pandas as pd

ENV_VAR = "KERAS_FACESET_DATA"
IMAGE_DIR = "lfw-deepfunneled"
IMAGE_ARCHIVE = "lfw-deepfunneled.tgz"
NUM_IMAGES = 13233
UMASS = "http://vis-www.cs.umass.edu/lfw/"
FIGSHARE = "https://ndownloader.figshare.com/files/"

# filename -> (sha256, origins tried in order). The protocol hashes were computed on the official
# files and agree with scikit-learn's pins for the pairs files (its figshare mirrors are used as
# fallbacks). The archive has no pinned hash: `LFW.download` checks the extracted image count.
SOURCES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "pairs.txt": (
        "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
        (UMASS + "pairs.txt", FIGSHARE + "5976006"),
    ),
    "pairsDevTrain.txt": (
        "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa",
        (UMASS + "pairsDevTrain.txt", FIGSHARE + "5976012"),
    ),
    "pairsDevTest.txt": (
        "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c",
        (UMASS + "pairsDevTest.txt", FIGSHARE + "5976009"),
    ),
    "people.txt": (
        "bc8fa2b7f25c895cf7efb6de4f4fc27ca8b8d1cfa63350ad8b96eae2b198d365",
        (UMASS + "people.txt",),
    ),
    "peopleDevTrain.txt": (
        "2e58df13ba4cc143189336e001cc2c195f1dfa5b29a6475c02857be353c2a2fa",
        (UMASS + "peopleDevTrain.txt",),
    ),
    "peopleDevTest.txt": (
        "c3ed1f90499473401542101a56c14c1d82396bb8218c67a356d7460601047555",
        (UMASS + "peopleDevTest.txt",),
    ),
    IMAGE_ARCHIVE: (None, (UMASS + IMAGE_ARCHIVE,)),
}
PAIRS_FILES = {
    "view2": "pairs.txt",
    "dev_train": "pairsDevTrain.txt",
    "dev_test": "pairsDevTest.txt",
}
PEOPLE_FILES = {
    "view2": "people.txt",
    "dev_train": "peopleDevTrain.txt",
    "dev_test": "peopleDevTest.txt",
}


def default_data_dir() -> Path:
    """``$KERAS_FACESET_DATA`` if set, else ``$KERAS_HOME/datasets/lfw`` (``~/.keras/...``)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "datasets" / "lfw"


def _option(value: str, options: dict[str, str], what: str) -> str:
    if value not in options:
        raise ValueError(f"unknown LFW {what} {value!r}; expected one of {sorted(options)}")
    return options[value]


def _count_images(image_dir: Path) -> int:
    return sum(1 for _ in image_dir.glob("*/*.jpg")) if image_dir.is_dir() else 0


class LFW:
    """The LFW protocol files and deep-funneled images found in `data_dir`.

    `data_dir` defaults to `default_data_dir()`. Nothing is read until a method is called; a
    missing file raises `FileNotFoundError` naming it and how to obtain it (`LFW.download`).
    """

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        self.image_dir = self.data_dir / IMAGE_DIR

    def __repr__(self) -> str:
        return f"LFW({str(self.data_dir)!r})"

    def image_path(self, name: str, number: int) -> str:
        """Path of image `number` (1-based) of person `name`."""
        return str(self.image_dir / name / f"{name}_{number:04d}.jpg")

    def _missing(self, what: Path, fname: str) -> FileNotFoundError:
        origin = SOURCES[fname][1][0]
        return FileNotFoundError(
            f"LFW {what} not found. Run keras_faceset.data.lfw.LFW.download({str(self.data_dir)!r})"
            f", or fetch {origin} into {self.data_dir} yourself (extract {IMAGE_ARCHIVE} there), "
            f"or set {ENV_VAR} to the folder holding {IMAGE_DIR}/ and the protocol files."
        )

    def _require_images(self) -> None:
        if not self.image_dir.is_dir():
            raise self._missing(self.image_dir, IMAGE_ARCHIVE)

    def _rows(self, fname: str) -> list[tuple[int, list[str]]]:
        """(line number, whitespace-split fields) of the non-blank lines of a protocol file."""
        path = self.data_dir / fname
        if not path.is_file():
            raise self._missing(path, fname)
        lines = path.read_text().splitlines()
        return [(i, line.split()) for i, line in enumerate(lines, 1) if line.strip()]

    def pairs(self, view: str = "view2") -> pd.DataFrame:
        """Pairs of `view` ("view2", "dev_train" or "dev_test") in file order.

        Columns: path_a, path_b, same (bool), fold (int, 0-9 for View 2, 0 for View 1),
        name_a, name_b. Within a fold the matched pairs come first, then the mismatched ones.
        """
        fname = _option(view, PAIRS_FILES, "view")
        rows = self._rows(fname)
        self._require_images()
        header = [int(x) for x in rows[0][1]]
        num_folds, per_fold = header if len(header) == 2 else (1, header[0])
        body = rows[1:]
        if len(body) != 2 * num_folds * per_fold:
            raise ValueError(
                f"{self.data_dir / fname}: header promises {num_folds} folds of {per_fold} "
                f"matched + {per_fold} mismatched pairs, found {len(body)} pair lines"
            )
        records = []
        for index, (line_no, fields) in enumerate(body):
            fold, same = index // (2 * per_fold), index % (2 * per_fold) < per_fold
            expected = 3 if same else 4
            if len(fields) != expected:
                layout = "name n1 n2" if same else "name1 n1 name2 n2"
                raise ValueError(
                    f"{self.data_dir / fname}:{line_no}: expected '{layout}', got {fields}"
                )
            if same:
                name_a, name_b, n_a, n_b = fields[0], fields[0], fields[1], fields[2]
            else:
                name_a, n_a, name_b, n_b = fields
            records.append(
                (
                    self.image_path(name_a, int(n_a)),
                    self.image_path(name_b, int(n_b)),
                    same,
                    fold,
                    name_a,
                    name_b,
                )
            )
        return pd.DataFrame.from_records(
            records, columns=["path_a", "path_b", "same", "fold", "name_a", "name_b"]
        )

    def people(self, split: str = "view2") -> pd.DataFrame:
        """People of `split` ("view2", "dev_train" or "dev_test"): name, count, fold."""
        fname = _option(split, PEOPLE_FILES, "split")
        path = self.data_dir / fname
        rows = self._rows(fname)
        # View 2 starts with the fold count, then each fold is its people count and its people;
        # View 1 is a single such fold.
        num_folds, cursor = (int(rows[0][1][0]), 1) if split == "view2" else (1, 0)
        records = []
        for fold in range(num_folds):
            if cursor >= len(rows):
                raise ValueError(f"{path}: ends before the people count of fold {fold}")
            count = int(rows[cursor][1][0])
            block = rows[cursor + 1 : cursor + 1 + count]
            if len(block) != count or any(len(fields) != 2 for _, fields in block):
                raise ValueError(
                    f"{path}:{rows[cursor][0]}: fold {fold} should list {count} 'name count' lines"
                )
            records += [(fields[0], int(fields[1]), fold) for _, fields in block]
            cursor += 1 + count
        if cursor != len(rows):
            raise ValueError(f"{path}:{rows[cursor][0]}: unexpected line after the last fold")
        return pd.DataFrame.from_records(records, columns=["name", "count", "fold"])

    def images(self, split: str = "view2") -> pd.DataFrame:
        """Every image of the people of `split`: path, identity (the name), fold."""
        people = self.people(split)
        self._require_images()
        records = [
            (self.image_path(name, number), name, fold)
            for name, count, fold in people.itertuples(index=False)
            for number in range(1, count + 1)
        ]
        return pd.DataFrame.from_records(records, columns=["path", "identity", "fold"])

    @classmethod
    def download(cls, dest: str | Path | None = None) -> LFW:
        """Fetch the protocol files and the deep-funneled archive into `dest`; return `LFW(dest)`.

        Uses `keras.utils.get_file`: files already present with the pinned sha256 are kept,
        others are (re)downloaded and verified. The archive (~100 MB) is skipped when
        ``lfw-deepfunneled/`` already holds all 13,233 images; otherwise it is downloaded,
        extracted, checked for 13,233 images, and deleted. A failed download raises `OSError`
        naming the URL and where to put the file by hand.
        """
        dest = Path(dest).expanduser() if dest is not None else default_data_dir()
        dest.mkdir(parents=True, exist_ok=True)
        for fname in SOURCES:
            if fname != IMAGE_ARCHIVE:
                _fetch(fname, dest)
        image_dir = dest / IMAGE_DIR
        if _count_images(image_dir) != NUM_IMAGES:
            archive = _fetch(IMAGE_ARCHIVE, dest)
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")
            found = _count_images(image_dir)
            if found != NUM_IMAGES:
                raise OSError(
                    f"{archive} gave {found} images in {image_dir}, expected {NUM_IMAGES}: "
                    "the archive is incomplete; delete it and download again"
                )
            archive.unlink()
        return cls(dest)


def _fetch(fname: str, dest: Path) -> Path:
    """Download `fname` into `dest` from the first origin that works, checking its sha256."""
    import keras

    sha256, origins = SOURCES[fname]
    errors = []
    for origin in origins:
        try:
            path = keras.utils.get_file(
                fname,
                origin,
                file_hash=sha256,
                hash_algorithm="sha256",
                cache_dir=str(dest),
                cache_subdir=str(dest),  # absolute: keras never falls back to /tmp/.keras
            )
            return Path(path)
        except Exception as err:  # noqa: BLE001 - get_file raises bare Exception on URL errors
            errors.append(f"{origin}: {err}")
    pinned = f" (sha256 {sha256})" if sha256 else ""
    raise OSError(
        f"Could not download {fname} ({'; '.join(errors)}). Without network access, copy it to "
        f"{dest / fname}{pinned} and call LFW.download again."
    )
