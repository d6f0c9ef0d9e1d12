"""The export of the real dlib_resnet preset (photo signatures and warm-up records), made once
for the modules that read it."""

import pytest


@pytest.fixture(scope="session")
def dlib_export(tmp_path_factory):
    """(spec, model dir, loaded SavedModel) of `ExportSpec.from_preset("dlib_resnet")` exported
    with the defaults; tests only read it."""
    import tensorflow as tf

    from keras_faceset.export import ExportSpec, export_saved_model

    spec = ExportSpec.from_preset("dlib_resnet")
    model_dir = export_saved_model(spec, tmp_path_factory.mktemp("models"))
    return spec, model_dir, tf.saved_model.load(str(model_dir))
