"""What gets exported: an image backbone, an optional set head and the image size they expect.

The contract is that of `keras_faceset.models` (`SetEmbeddingModel`, `SetHead`), so a NAN or QAN
model exports as it is:

- `backbone`: images `(N, H, W, 3)` float32 RGB 0..255 -> frame embeddings `(N, D)`.
  Preprocessing (standardisation, mean subtraction) lives inside the backbone.
- `head`: `head({"frame_embeddings": (B, T, D) float32, "mask": (B, T) bool})` -> a dict with
  `"embedding"` `(B, E)` and `"weights"` `(B, T)` (further outputs, such as QAN's
  `"quality"`, are not exported). A head may also take `"frame_features"` `(B, T, *S)` (a QAN
  head scoring quality from the backbone's feature map, `feature_shape` S); the backbone then
  needs a `feature_extractor()`, as in `SetEmbeddingModel`. Default (`head=None`): `MeanHead(D)`,
  the set embedding of an image preset.
- The served per-frame features are what the head reads per frame, flattened into one vector
  of `frame_dim` F = D + prod(S) floats: the raw frame embedding, then the frame features.
- A model with `backbone` and `head` attributes (a `SetEmbeddingModel`) is split into the two
  by `ExportSpec.from_model`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_faceset.models.mean import MeanHead
from keras_faceset.models.set_head import frame_feature_shape
from keras_faceset.models.task import frame_inputs_model

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HEAD_INPUTS = {"frame_embeddings", "mask"}
FEATURES_INPUT = "frame_features"


@dataclass(frozen=True)
class ExportSpec:
    """A servable face model: `name` (the TF Serving model name), an image `backbone`, an
    optional set `head` (None: `MeanHead(D)`) and the backbone's `input_size` (height, width)."""

    name: str
    backbone: keras.Model
    input_size: tuple[int, int]
    head: keras.Model | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        size = self.input_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"input_size must be an int or (height, width) > 0, got {size!r}.")
        object.__setattr__(self, "input_size", size)
        static = tuple(self.backbone.input_shape[1:3]) if _is_image_input(self.backbone) else ()
        if any(s is not None and s != t for s, t in zip(static, size, strict=False)):
            raise ValueError(
                f"input_size {size} does not match the backbone's input shape "
                f"{tuple(self.backbone.input_shape)}."
            )

    @property
    def embedding_dim(self) -> int:
        """D, read from the backbone's output on one blank image."""
        return int(self.check_backbone().shape[-1])

    def check_backbone(self) -> np.ndarray:
        """The backbone's output on one blank image, after checking it is `(1, D)`."""
        out = keras.ops.convert_to_numpy(self.backbone(np.zeros((1, *self.input_size, 3), "f4")))
        if out.ndim != 2 or out.shape[0] != 1:
            raise ValueError(
                f"the backbone must map images (N, H, W, 3) to embeddings (N, D); "
                f"got output shape {out.shape} for one image."
            )
        return out

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        """Per-frame shape S of the head's `"frame_features"` input, None when it takes none."""
        inputs = getattr(self.head, "input", None)
        if not isinstance(inputs, dict) or FEATURES_INPUT not in inputs:
            return None
        return frame_feature_shape(tuple(inputs[FEATURES_INPUT].shape[2:]))

    @property
    def frame_dim(self) -> int:
        """F = D + prod(S): the size of the served per-frame features."""
        return self.embedding_dim + int(np.prod(self.feature_shape or (0,)))

    def frame_model(self, backbone: keras.Model | None = None) -> keras.Model:
        """Images `(N, H, W, 3)` -> the head's per-frame inputs `{"frame_embeddings",
        ["frame_features"]}`, computed by `backbone` (default: the spec's)."""
        return frame_inputs_model(backbone or self.backbone, self.feature_shape)

    def resolved_head(self) -> keras.Model:
        """The head, or `MeanHead(D)`, after checking it follows the head contract."""
        dim = self.embedding_dim
        head = self.head if self.head is not None else MeanHead(dim)
        inputs = getattr(head, "input", None)
        if isinstance(inputs, dict) and set(inputs) - {FEATURES_INPUT} != HEAD_INPUTS:
            raise ValueError(
                f"the head takes inputs {sorted(inputs)}; the export feeds it "
                f"{sorted(HEAD_INPUTS)} and optionally {FEATURES_INPUT!r}."
            )
        frames = np.zeros((1, 2, dim), "float32")
        frames[..., 0] = 1.0
        head_inputs = {"frame_embeddings": frames, "mask": np.array([[True, False]])}
        if self.feature_shape is not None:
            self.frame_model()  # a clear error when the backbone has no feature_extractor()
            head_inputs[FEATURES_INPUT] = np.ones((1, 2, *self.feature_shape), "float32")
        out = head(head_inputs)
        if not isinstance(out, dict) or not {"embedding", "weights"} <= set(out):
            keys = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise ValueError(
                f"the head must return a dict with keys 'embedding' and 'weights', got {keys}."
            )
        shapes = {key: tuple(out[key].shape) for key in ("embedding", "weights")}
        embedding_ok = len(shapes["embedding"]) == 2 and shapes["embedding"][0] == 1
        if not embedding_ok or shapes["weights"] != (1, 2):
            raise ValueError(
                f"the head must map frame embeddings (B, T, {dim}) and a mask (B, T) to an "
                f"embedding (B, E) and weights (B, T); got {shapes} for B=1, T=2."
            )
        return head

    @classmethod
    def from_model(
        cls, model: keras.Model, name: str, input_size: int | tuple[int, int] | None = None
    ) -> ExportSpec:
        """A spec from an image backbone, or from a set model exposing `backbone` and `head`.

        `input_size` defaults to the backbone's static input height and width.
        """
        backbone, head = _split(model)
        if input_size is None:
            if not _is_image_input(backbone) or None in backbone.input_shape[1:3]:
                raise ValueError(
                    f"give input_size: the backbone's input shape {backbone.input_shape} "
                    "has no static height and width."
                )
            input_size = tuple(backbone.input_shape[1:3])
        return cls(name=name, backbone=backbone, input_size=input_size, head=head)

    @classmethod
    def from_preset(cls, name: str, weights: str | None = "pretrained", cache_dir=None):
        """The zoo preset `name` with its weights (see `keras_faceset.zoo.load`)."""
        from keras_faceset import zoo

        preset = zoo.get_preset(name)
        model = zoo.load(name, weights=weights, cache_dir=cache_dir)
        return cls.from_model(model, name=preset.name, input_size=preset.input_size)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, preset: str | None = None, name: str | None = None
    ) -> ExportSpec:
        """A spec from a model saved by `model.save("x.keras")`: an image backbone or a set
        task (e.g. a NAN fine-tuned from a zoo preset).

        With `preset` (a zoo preset name), the preset gives the name and the input size, which
        the saved backbone must take; without, the name is the file's stem. `name` overrides
        either.
        """
        path = Path(path)
        if path.suffix != ".keras":
            raise ValueError(
                f"{path} is not a .keras file: give a model saved with "
                f"model.save({path.stem + '.keras'!r})."
            )
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        model = keras.saving.load_model(path)
        if preset is None:
            return cls.from_model(model, name=name or path.stem)
        from keras_faceset import zoo

        preset = zoo.get_preset(preset)
        size = (preset.input_size, preset.input_size)
        backbone, _ = _split(model)
        shape = tuple(backbone.input_shape[1:3]) if _is_image_input(backbone) else ()
        if any(s is not None and s != t for s, t in zip(shape, size, strict=False)):
            raise ValueError(
                f"the backbone saved in {path} takes {shape} images, preset {preset.name!r} "
                f"takes {size}: give the preset the model was fine-tuned from, or export the "
                f"file on its own (keras-faceset export {path} BASE_DIR --name NAME)."
            )
        return cls.from_model(model, name=name or preset.name, input_size=size)


def check_name(name: str) -> str:
    """`name` when it can name an exported model (a directory or file, the TF Serving model),
    else ValueError."""
    if not _NAME.match(name):
        raise ValueError(
            f"model name {name!r} must be letters, digits, '_', '.' or '-' "
            "(it names a directory and the TF Serving model)."
        )
    return name


def _split(model: keras.Model) -> tuple[keras.Model, keras.Model | None]:
    """`(backbone, head)` of a set model with both attributes, else `(model, None)`."""
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    if isinstance(backbone, keras.Model) and isinstance(head, keras.Model):
        return backbone, head
    return model, None


def _is_image_input(model: keras.Model) -> bool:
    """True when the model has one known rank-4 input (a subclassed model may have none)."""
    try:
        shape = model.input_shape
    except (AttributeError, ValueError, RuntimeError):
        return False
    return isinstance(shape, tuple) and len(shape) == 4
