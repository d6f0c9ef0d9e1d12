"""Face detection in Keras and TensorFlow: MTCNN (Zhang et al. 2016), weights of the `mtcnn`
package, the whole cascade in one graph (`Mtcnn`)."""

from keras_faceset.detect.cascade import LANDMARK_NAMES, Mtcnn
from keras_faceset.detect.convert import assign_weights, mtcnn_network, read_mtcnn_weights
from keras_faceset.detect.networks import onet, pnet, rnet

__all__ = [
    "LANDMARK_NAMES",
    "Mtcnn",
    "assign_weights",
    "mtcnn_network",
    "onet",
    "pnet",
    "read_mtcnn_weights",
    "rnet",
]
