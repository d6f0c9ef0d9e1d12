"""Models: backbones (image -> embedding), set heads (mean, NAN, QAN, SeqFace), tasks."""

from keras_faceset.models.backbones import DlibResNet, InceptionResNetV1
from keras_faceset.models.fold import fold_batch_norm
from keras_faceset.models.identification import identification_model
from keras_faceset.models.mean import MeanHead, MeanSet
from keras_faceset.models.nan import NAN, NANHead
from keras_faceset.models.qan import QAN, QANHead
from keras_faceset.models.seqface import SeqFace, SeqFaceHead, lsr_targets, seqface_training_model
from keras_faceset.models.set_head import SetHead
from keras_faceset.models.set_inference import head_sets, pad_sets
from keras_faceset.models.streaming import StreamingAggregator, StreamState
from keras_faceset.models.task import SetEmbeddingModel, set_embedding_model

__all__ = [
    "NAN",
    "QAN",
    "DlibResNet",
    "InceptionResNetV1",
    "MeanHead",
    "MeanSet",
    "NANHead",
    "QANHead",
    "SeqFace",
    "SeqFaceHead",
    "SetEmbeddingModel",
    "SetHead",
    "StreamState",
    "StreamingAggregator",
    "fold_batch_norm",
    "head_sets",
    "identification_model",
    "lsr_targets",
    "pad_sets",
    "seqface_training_model",
    "set_embedding_model",
]
