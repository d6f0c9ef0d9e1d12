"""Face detection in Keras and TensorFlow: MTCNN (Zhang et al. 2016), weights of the `mtcnn`
package, the whole cascade in one graph (`Mtcnn`), batched over video frames (`detect_video`)."""

from keras_faceset.detect.cascade import LANDMARK_NAMES, Mtcnn, shared_mtcnn
from keras_faceset.detect.convert import assign_weights, mtcnn_network, read_mtcnn_weights
from keras_faceset.detect.networks import onet, pnet, rnet
from keras_faceset.detect.video import VideoFaces, detect_video, iter_detect_video

__all__ = [
    "LANDMARK_NAMES",
    "Mtcnn",
    "shared_mtcnn",
    "VideoFaces",
    "assign_weights",
    "detect_video",
    "iter_detect_video",
    "mtcnn_network",
    "onet",
    "pnet",
    "read_mtcnn_weights",
    "rnet",
]
