"""Galleries: enrol people, identify faces against them (`Gallery`), over a vector index."""

from keras_faceset.gallery.cluster import cluster, clustering_scores, default_threshold
from keras_faceset.gallery.gallery import (
    UNKNOWN,
    AddReport,
    Gallery,
    GalleryModelError,
    Identification,
    threshold_at_fpir,
)
from keras_faceset.gallery.index import ExactIndex, HnswIndex, IndexFileError, VectorIndex
from keras_faceset.gallery.store import GalleryFileError

__all__ = [
    "UNKNOWN",
    "AddReport",
    "ExactIndex",
    "Gallery",
    "GalleryFileError",
    "GalleryModelError",
    "HnswIndex",
    "Identification",
    "IndexFileError",
    "VectorIndex",
    "cluster",
    "clustering_scores",
    "default_threshold",
    "threshold_at_fpir",
]
