"""Every `MtcnnDetector` (so every `FaceEmbedder`) of one setting in a process shares one
`Mtcnn`, built and traced once; another setting gets its own."""

import numpy as np

from keras_faceset.align import MtcnnDetector
from keras_faceset.detect import Mtcnn, shared_mtcnn


def test_detectors_of_one_setting_share_one_traced_cascade():
    first, second = MtcnnDetector(), MtcnnDetector()
    assert first._model() is second._model() is shared_mtcnn(max_faces=first.max_faces)
    assert isinstance(first._model(), Mtcnn)
    assert MtcnnDetector(max_faces=2)._model() is not first._model()
    assert MtcnnDetector(max_faces=2)._model().max_faces == 2
    image = np.full((64, 64, 3), 128, np.uint8)
    first.detect([image])
    traces = first._model().detect_graph.experimental_get_tracing_count()
    second.detect([np.zeros((80, 96, 3), np.uint8)])  # another size, another detector
    assert second._model().detect_graph.experimental_get_tracing_count() == traces == 1
