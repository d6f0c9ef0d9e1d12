"""Models: backbones (image -> embedding) and set tasks (backbone + NAN / QAN / SeqFace head)."""

from keras_faceset.models.backbones import DlibResNet, InceptionResNetV1
from keras_faceset.models.fold import fold_batch_norm
from keras_faceset.models.nan import NAN, NANHead
from keras_faceset.models.qan import QAN, QANHead
from keras_faceset.models.seqface import SeqFace, SeqFaceHead, lsr_targets, seqface_training_model
from keras_faceset.models.set_model import (
    SetEmbeddingModel,
    SetHead,
    identification_model,
    set_embedding_model,
)
from keras_faceset.models.streaming import StreamingAggregator, StreamState

__all__ = [
    "NAN",
    "QAN",
    "DlibResNet",
    "InceptionResNetV1",
    "NANHead",
    "QANHead",
    "SeqFace",
    "SeqFaceHead",
    "SetEmbeddingModel",
    "SetHead",
    "StreamState",
    "StreamingAggregator",
    "fold_batch_norm",
    "identification_model",
    "lsr_targets",
    "seqface_training_model",
    "set_embedding_model",
]
