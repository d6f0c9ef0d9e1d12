"""Face images in, L2-normalised embeddings out: a driver around a preset's task model.

`FaceEmbedder` runs the task that `keras_faceset.zoo.load(name, form="task")` returns (backbone +
head; an image preset's head is `MeanHead`): photos are aligned as the preset's crop spec says
(``align="preset"``: MTCNN, then facenet's box + margin or dlib's 5-point warp; ``"center"``: the
fixed central crop, no detection), each distinct frame goes once through the task's
`frame_model` (batch norm folded by default), and sets go through its head
(`keras_faceset.models.set_inference`). It is what the CLI and the evaluations use.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from keras_faceset import zoo
from keras_faceset.align.pipeline import (
    CHUNK,
    AlignedBatch,
    FoundFaces,
    ImageInput,
    align_faces,
    crop_like,
    default_detector,
    find_faces,
    image_list,
)
from keras_faceset.files import READ_ERRORS, sha256_file
from keras_faceset.models import MeanSet, SetEmbeddingModel, fold_batch_norm, head_sets
from keras_faceset.models.quantize import (
    CALIBRATION_IMAGES,
    MIN_CALIBRATION_FACES,
    TFLITE_PRECISIONS,
    CalibrationSource,
    Int8FrameModel,
    calibration_key,
    calibration_sample,
    convert_tflite,
)
from keras_faceset.models.set_inference import consecutive_rows
from keras_faceset.progress import progress

ALIGNMENTS = ("preset", "center")
PRECISIONS = ("float32", "bfloat16")
"""What a TensorFlow graph of ours computes in (`FaceEmbedder`, SavedModel export).
`precision="bfloat16"`: bfloat16 compute on the folded graph (`fold_batch_norm(...,
dtype="mixed_bfloat16")`), ~1.9x images/s at batch 32 on CPUs with AVX512_BF16, LFW View 2
unchanged (docs/performance.md); slower at batch 1."""
EMBEDDER_PRECISIONS = (*PRECISIONS, *TFLITE_PRECISIONS)
"""`FaceEmbedder`'s: also (image presets) the folded graph quantized by TFLite once, cached in
the zoo cache, and run by the LiteRT interpreter with XNNPack (`Int8FrameModel`: a .tflite
model, not a TensorFlow graph): `precision="int8"` full-integer (`convert_tflite`, calibrated
on `CALIBRATION_IMAGES` LFW View 1 DevTrain faces or on the caller's own) and
`precision="int8-dynamic"` dynamic-range (int8 weights, activations quantized at run time: no
calibration faces, no LFW needed)."""
CALIBRATION_CHUNK = 32
"""Calibration images decoded at a time (photos may be large)."""


class FaceEmbedder:
    """Embed face images (paths or uint8 RGB arrays) and sets of them with a zoo preset.

    Also a NumPy callable ``(N, H, W, 3) uint8 -> (N, D)`` (`embed_images`), so it plugs into
    `keras_faceset.eval.evaluate_lfw` as the model. `fallbacks` counts the images in which
    alignment found no face and used the central crop. `embed` gives the backbone's unit frame
    embeddings, `embed_sets` the head's set embeddings with per-frame weights (an image preset:
    the normalised mean of the unit frames), `embed_images` each image as a set of one frame.
    Loops over more than one chunk show a `keras_faceset.progress` bar on stderr.

    Args:
        model: a preset name (`keras_faceset.zoo.list_models`).
        model_file: a `.keras` file to run instead of the preset's weights: a task saved after
            fine-tuning (e.g. `zoo.load("nan")` trained with `fit`) or an image backbone. The
            preset still gives the crop; its thresholds apply only to its own weights, so a
            model file has none (calibrate it with ``keras-faceset evaluate ... --calibrate``).
        fold: run the graph with batch norm folded into the convolutions (the default; equal
            to the unfolded graph within 1e-4, 7-15 % faster on CPU).
        detector: "graph" (MTCNN in one TensorFlow graph, `keras_faceset.detect`; the default)
            or "package" (the `mtcnn` package: the same faces, about half the speed).
        precision: "float32" (the default: the same embeddings on every CPU), "bfloat16",
            "int8" or "int8-dynamic" (`EMBEDDER_PRECISIONS`; speed and LFW View 2 of each in
            docs/performance.md).
        calibration: with ``precision="int8"``, the faces to calibrate on instead of LFW's: a
            folder of images (searched recursively) or a list of image files, aligned as any
            photo (`CALIBRATION_IMAGES` sampled, seeded; at least `MIN_CALIBRATION_FACES` with
            a face). Each set of files gets its own cached model. `int8_calibration` then
            describes what the model was calibrated on.
    """

    def __init__(
        self,
        model: str = "dlib_resnet",
        align: str = "preset",
        weights: str | os.PathLike | None = "pretrained",
        chip_cache: str | os.PathLike | None = None,
        batch_size: int = 32,
        flip: bool = False,
        precision: str = "float32",
        fold: bool = True,
        model_file: str | os.PathLike | None = None,
        detector: str = "graph",
        calibration: CalibrationSource | None = None,
    ):
        if align not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {align!r}; expected one of {ALIGNMENTS}")
        if precision not in EMBEDDER_PRECISIONS:
            raise ValueError(
                f"unknown precision {precision!r}; expected one of {EMBEDDER_PRECISIONS}"
            )
        self.preset = zoo.get_preset(model)
        quantized = precision in TFLITE_PRECISIONS
        if quantized and (self.preset.is_set_model or model_file is not None):
            raise ValueError(
                f"precision={precision!r} quantizes an image preset's own weights (facenet, "
                'dlib_resnet); for a set preset or a --model file use "bfloat16" or "float32"'
            )
        if calibration is not None and precision != "int8":
            raise ValueError(
                f'calibration images are for precision="int8" (they set its activation '
                f"ranges); precision={precision!r} needs none: drop them or ask for int8"
            )
        if flip and self.preset.is_set_model:
            raise ValueError(f"--flip applies to image presets; {model} is a set model")
        self.align = align
        self.detector = default_detector(detector)  # one per process; built when first used
        self.crop = self.preset.crop_spec
        self.chip_cache = chip_cache
        self.batch_size = batch_size
        self.flip = flip
        self.thresholds = dict(self.preset.thresholds)
        self.model_file = None if model_file is None else Path(model_file)
        self._backbone_key = self.preset.backbone_preset
        if model_file is None:
            self.task = zoo.load(model, weights=weights, form="task")
        else:
            self.task = load_task_file(model_file, self.preset)
            digest = sha256_file(self.model_file)[:16]
            self._backbone_key = f"{self.model_file.name} sha256 {digest}"
            self.thresholds = {}
        self.head = self.task.head
        self.frame_model = self.task.frame_model
        self.fallbacks = 0
        self.int8_calibration: dict | None = None
        if fold or precision != "float32":
            dtype = "mixed_bfloat16" if precision == "bfloat16" else None
            self.frame_model = fold_batch_norm(self.frame_model, dtype=dtype)
        if quantized:
            self.frame_model = Int8FrameModel(self._tflite_model(precision, weights, calibration))
            self.fallbacks = 0  # those of the calibration faces are not the caller's
        name = model if model_file is None else f"{model}:{self.model_file.name}"
        detected = f", {detector} detector" if align == "preset" else ""
        self.__name__ = f"{name}[{self.description}{detected}]"

    def _tflite_model(self, precision: str, weights, calibration: CalibrationSource | None) -> Path:
        """The preset's `precision` `.tflite` in the zoo cache, quantized on first use; only of
        the pretrained weights. ``int8-dynamic`` is `<preset>.int8-dynamic.tflite`. ``int8``
        is calibrated on faces aligned as this embedder aligns them: LFW's
        `<preset>.int8.tflite`; the caller's `<preset>.int8.<key>.tflite`, the key hashing the
        files' bytes and `frame_key` (`calibration_key`), so no two sets of faces share a
        model."""
        if weights != "pretrained":
            raise ValueError(f"precision={precision!r} quantizes the pretrained weights only")
        name = self.preset.name
        if precision == "int8-dynamic":
            paths, stem = None, f"{name}.int8-dynamic"  # no calibration
        elif calibration is None:
            paths, stem = None, f"{name}.int8"  # LFW's, sampled only when quantizing
            self.int8_calibration = {
                "source": "LFW View 1 DevTrain",
                "images": CALIBRATION_IMAGES,
                "seed": 0,
            }
        else:
            paths = calibration_sample(calibration)
            key = calibration_key(paths, self.frame_key)
            stem = f"{name}.int8.{key[:16]}"
            given = isinstance(calibration, (str, os.PathLike))
            label = os.fspath(calibration) if given else "the image files given"
            self.int8_calibration = {
                "source": label,
                "images": len(paths),
                "seed": 0,
                "sha256": key,
            }
        target = zoo.cache.home_dir() / name / f"{stem}.tflite"
        digest = target.with_name(target.name + ".sha256")
        with zoo.cache.file_lock(target.with_name(".int8.lock")):
            if target.is_file() and digest.is_file():
                try:
                    sha256 = digest.read_text().strip()
                    zoo.cache.verify_sha256(target, sha256, f"{name} {precision} model")
                    return target
                except ValueError as error:
                    warnings.warn(f"{error} Quantizing again.", stacklevel=3)
            faces = None
            if precision == "int8":
                faces = self._calibration_faces(
                    calibration_images() if paths is None else paths,
                    self.int8_calibration["source"],
                )
            with zoo.cache.atomic_path(target) as tmp:
                convert_tflite(self.frame_model, tmp, precision, faces)
                with zoo.cache.atomic_path(digest) as tmp_digest:
                    tmp_digest.write_text(sha256_file(tmp) + "\n")
        return target

    def _calibration_faces(self, paths: Sequence[Path], source: str) -> np.ndarray:
        """The chips of the faces in `paths`, aligned as this embedder aligns photos; files
        that cannot be decoded and (with detection) images without a face are skipped and
        named in a warning. Fewer than `MIN_CALIBRATION_FACES` faces is a ValueError."""
        faces, skipped, faceless = [], [], []
        for start in range(0, len(paths), CALIBRATION_CHUNK):
            chunk, decoded = paths[start : start + CALIBRATION_CHUNK], []
            for path in chunk:
                try:
                    decoded.append((path, _decode(path)))
                except READ_ERRORS as error:
                    skipped.append(f"{path} ({error})")
            if not decoded:
                continue
            chips, aligned = self._chips([image for _, image in decoded])
            found = np.ones(len(chips), bool) if aligned is None else ~aligned.fallback
            faceless += [str(path) for (path, _), ok in zip(decoded, found, strict=True) if not ok]
            faces.append(chips[found])
        count = sum(len(chips) for chips in faces)
        if skipped or faceless:
            shown = [f"unreadable: {item}" for item in skipped[:5]]
            shown += [f"no face: {item}" for item in faceless[:5]]
            more = len(skipped) + len(faceless) - len(shown)
            warnings.warn(
                f"int8 calibration: skipped {len(skipped)} unreadable image(s) and "
                f"{len(faceless)} without a face of the {len(paths)} sampled from {source}: "
                + "; ".join(shown)
                + (f"; and {more} more" if more > 0 else ""),
                stacklevel=4,
            )
        if count < MIN_CALIBRATION_FACES:
            raise ValueError(
                f"int8 calibration found {count} face(s) in the {len(paths)} image(s) of "
                f"{source} ({len(skipped)} unreadable, {len(faceless)} without a face); it "
                f"needs at least {MIN_CALIBRATION_FACES}: add photos of faces (up to "
                f"{CALIBRATION_IMAGES} are sampled), or leave calibration out to use LFW's"
            )
        return np.concatenate(faces)

    @property
    def takes_sets(self) -> bool:
        """True for a set preset (nan, qan, ...): inputs are sets of frames."""
        return self.preset.is_set_model

    @property
    def frame_key(self) -> str:
        """What the frame outputs depend on: backbone preset (or the model file's content), crop,
        detector, flip and head features (presets with the same key, e.g. nan and nan1, can
        share cached frame outputs)."""
        features = self.head.feature_shape
        key = f"{self._backbone_key} | {self.description}"
        if self.align == "preset":
            key += f" | detector {self.detector.backend}"
        return key + (f" | features {features}" if features else "")

    @property
    def description(self) -> str:
        if self.align == "center":
            text = f"central crop (no detection) resized to {self.crop.size}"
        else:
            text = self.crop.description
        return text + (", + mirrored chip" if self.flip else "")

    def align_faces(self, images: Sequence[ImageInput] | np.ndarray) -> AlignedBatch:
        """`keras_faceset.align.align_faces` with the preset's crop and chip cache, in chunks
        (with a progress bar); adds the fallbacks to `fallbacks`."""
        chunks = [images[i : i + CHUNK] for i in range(0, len(images), CHUNK)]
        aligned = AlignedBatch.concatenate(
            [
                align_faces(
                    chunk, **self.preset.crop, detector=self.detector, cache=self.chip_cache
                )
                for chunk in progress(chunks, len(images), "aligning", weight=len)
            ]
        )
        self.fallbacks += int(aligned.fallback.sum())
        return aligned

    def find_faces(
        self, images: Sequence[ImageInput] | np.ndarray, max_faces: int | None = None
    ) -> FoundFaces:
        """Every face of each image (`keras_faceset.align.find_faces`) cropped as the preset
        says; embed them with `frame_outputs(found.chips)`."""
        if self.align != "preset":
            raise ValueError('finding faces needs detection: use align="preset", not "center"')
        return find_faces(images, self.crop, self.detector, max_faces)

    def chips(
        self, images: Sequence[ImageInput] | np.ndarray, like: AlignedBatch | None = None
    ) -> np.ndarray:
        """uint8 (N, size, size, 3) crops for the backbone.

        With `like`, image i is cropped where the face of ``like`` image i was found (no
        detection): e.g. a degraded copy of an image cropped with the clean image's landmarks.
        """
        return self._chips(images, like)[0]

    def _chips(
        self, images: Sequence[ImageInput] | np.ndarray, like: AlignedBatch | None = None
    ) -> tuple[np.ndarray, AlignedBatch | None]:
        """The chips and, when faces were detected, the alignments."""
        if self.align == "preset" and like is None:
            aligned = self.align_faces(images)
            return aligned.chips, aligned
        decoded = [_decode(item) for item in image_list(images)]
        return crop_like(decoded, like, self.crop), like

    def frame_outputs(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        """The task's per-frame outputs of uint8 chips (N, size, size, 3), in batches:
        "frame_embeddings" (N, D), raw (with `flip`, plus the mirrored chip's), and
        "frame_features" when the head takes them."""
        chips = np.asarray(chips)
        side = self.preset.input_size
        if chips.dtype != np.uint8 or chips.shape[1:] != (side, side, 3):
            raise ValueError(
                f"chips must be uint8 (N, {side}, {side}, 3), the model's input size; got "
                f"{chips.dtype} {chips.shape}: crop images with FaceEmbedder.chips (or "
                "find_faces), which give such chips"
            )
        size, outputs = self.batch_size, {}
        batches = range(0, len(chips), size)
        steps = progress(
            batches, len(chips), "embedding", lambda start: min(size, len(chips) - start)
        )
        for start in steps:
            batch = chips[start : start + size].astype("float32")
            out = self.frame_model.predict_on_batch(batch)
            if self.flip:
                mirrored = self.frame_model.predict_on_batch(batch[:, :, ::-1])
                out = {key: out[key] + mirrored[key] for key in out}
            for key, value in out.items():
                outputs.setdefault(key, []).append(np.asarray(value, "float32"))
        return {key: np.concatenate(value) for key, value in outputs.items()}

    def set_embeddings(
        self, frames: dict[str, np.ndarray], rows: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The head's set embeddings (N, D), per-frame weights (N, T) and mask (N, T) from
        `frame_outputs` `frames` and each set's rows into them."""
        features = frames.get("frame_features")
        embeddings = frames["frame_embeddings"]
        return head_sets(self.head, embeddings, rows, features, self.batch_size)

    def embed_sets(
        self, sets: Sequence[Sequence[ImageInput]], return_faces: bool = False
    ) -> tuple[np.ndarray, list[np.ndarray]] | tuple[np.ndarray, list[np.ndarray], AlignedBatch]:
        """Sets of images -> their unit embeddings (N, D) and each set's frame weights (T_i,),
        which sum to 1. Frames are decoded, aligned and embedded a chunk at a time, so memory
        does not grow with them (only the frame embeddings are kept); then the sets go through
        the head. With `return_faces`, also the `AlignedBatch` of every frame in order (None
        with ``align="center"``, which detects nothing); it holds every chip."""
        for i, frames in enumerate(sets):
            if isinstance(frames, (str, os.PathLike)):
                raise ValueError(
                    f"set {i} is the path {os.fspath(frames)!r}: a set is a list of frames "
                    f"(e.g. [{os.fspath(frames)!r}])"
                )
        sizes = [len(frames) for frames in sets]
        if not sets or min(sizes) < 1:
            raise ValueError("give at least one set, each of at least one frame")
        frames, faces = self._embed_frames(
            [frame for frames in sets for frame in frames], return_faces
        )
        embeddings, weights, _ = self.set_embeddings(frames, consecutive_rows(sizes))
        weights = [w[:size] for w, size in zip(weights, sizes, strict=True)]
        return (embeddings, weights, faces) if return_faces else (embeddings, weights)

    def embed_set(self, images: Sequence[ImageInput] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One set of frames -> (its L2-normalised embedding (D,), per-frame weights (T,))."""
        embeddings, weights = self.embed_sets([list(images)])
        return embeddings[0], weights[0]

    def embed_images(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """One unit embedding per image (N, D): each image as a set of one frame (for an image
        preset, its unit frame embedding)."""
        return self.embed_sets([[image] for image in images])[0]

    def embed(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """The backbone's L2-normalised float32 (N, D) frame embeddings.

        With `flip`, the embedding of the chip and of its mirror image are summed before
        normalisation (test-time augmentation, as facenet's `validate_on_lfw --use_flipped_images`).
        """
        raw = self._embed_frames(images)[0]["frame_embeddings"]
        return keras.ops.convert_to_numpy(keras.ops.normalize(raw, axis=-1)).astype("float32")

    def _embed_frames(
        self, images: Sequence[ImageInput] | np.ndarray, return_faces: bool = False
    ) -> tuple[dict[str, np.ndarray], AlignedBatch | None]:
        """`frame_outputs` of `images`, decoded and cropped a chunk of whole batches at a time
        (`CHUNK` images or more): memory is bounded by a chunk, not by the number of images.
        With `return_faces`, also the alignments of every image (None without detection)."""
        images = image_list(images)
        step = -(-CHUNK // self.batch_size) * self.batch_size
        chunks = [images[i : i + step] for i in range(0, len(images), step)]
        outputs, faces = [], []
        for chunk in progress(chunks, len(images), "embedding", weight=len):
            chips, aligned = self._chips(chunk)
            outputs.append(self.frame_outputs(chips))
            if return_faces and aligned is not None:
                faces.append(aligned)
        joined = {key: np.concatenate([out[key] for out in outputs]) for key in outputs[0]}
        return joined, AlignedBatch.concatenate(faces) if faces else None

    __call__ = embed_images


def load_task_file(path: str | os.PathLike, preset: zoo.Preset) -> SetEmbeddingModel:
    """A saved `.keras` model as a task for `preset`'s crop: a set task as it is, an image
    backbone with `MeanHead` (`MeanSet`)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a model file must be a .keras file (model.save('x.keras'))")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    model = keras.saving.load_model(path)
    if not isinstance(model, SetEmbeddingModel):
        model = MeanSet.from_backbone(model)
    size = tuple(model.backbone.input_shape[1:3])
    if size != (preset.input_size,) * 2:
        raise ValueError(
            f"{path} takes {size} images but preset {preset.name} crops "
            f"{preset.input_size}x{preset.input_size} chips: give the preset it was trained from"
        )
    return model


def calibration_images(count: int = CALIBRATION_IMAGES) -> list[str]:
    """`count` seeded images of LFW View 1 DevTrain (`keras_faceset.data.lfw.LFW`; a missing
    LFW raises FileNotFoundError saying where to put it)."""
    from keras_faceset.data.lfw import LFW

    pairs = LFW().pairs("dev_train")
    paths = sorted(set(pairs.path_a) | set(pairs.path_b))
    chosen = np.random.default_rng(0).choice(len(paths), count, replace=False)
    return [paths[i] for i in sorted(chosen)]


def _decode(item: ImageInput) -> np.ndarray:
    from keras_faceset.align import to_rgb_uint8
    from keras_faceset.data.images import load_image

    return to_rgb_uint8(item) if isinstance(item, np.ndarray) else load_image(item).numpy()


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos between rows of L2-normalised embeddings (0 = same direction, 2 = opposite)."""
    return 1.0 - np.sum(np.asarray(a) * np.asarray(b), axis=-1)
