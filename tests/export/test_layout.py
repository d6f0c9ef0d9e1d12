"""The versioned layout: `<base>/<name>/<version>/`, atomic writes, serving config files."""

import sys

import pytest
import tensorflow as tf
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from keras_faceset.export import ExportSpec, export_saved_model, next_version, warmup
from keras_faceset.export.saved_model import write_serving_configs
from tests.export.helpers import tiny_backbone


@pytest.fixture
def spec():
    return ExportSpec.from_model(tiny_backbone(), "tiny")


def test_versions_count_up_and_an_existing_version_is_refused(spec, tmp_path):
    first = export_saved_model(spec, tmp_path, warmup_requests=False)
    second = export_saved_model(spec, tmp_path, warmup_requests=False)
    assert (first, second) == (tmp_path / "tiny" / "1", tmp_path / "tiny" / "2")
    saved = (second / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match="2 already exists; versions are never overwritten"):
        export_saved_model(spec, tmp_path, version=2, warmup_requests=False)
    assert (second / "saved_model.pb").read_bytes() == saved
    assert not (second / "assets.extra").exists()
    names = sorted(p.name for p in (tmp_path / "tiny").iterdir())
    assert names == ["1", "2", "batching_parameters.txt", "models.config"]
    assert next_version(tmp_path / "tiny") == 3
    assert next_version(tmp_path / "missing") == 1


def _crash(*args, **kwargs):
    raise KeyboardInterrupt  # the harshest interruption Python code still sees


@pytest.mark.parametrize("during", ["tf.saved_model.save", "warm-up"])
def test_a_crash_mid_write_leaves_neither_a_version_nor_a_temporary_directory(
    spec, tmp_path, monkeypatch, during
):
    if during == "tf.saved_model.save":
        monkeypatch.setattr(tf.saved_model, "save", _crash)
    else:  # the SavedModel is complete, its warm-up file is not
        monkeypatch.setattr(warmup, "write_warmup_requests", _crash)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(spec, tmp_path, version=3)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_bad_versions_are_refused_before_anything_is_written(spec, tmp_path):
    for version in (0, -1, "2", 2.0, True):
        with pytest.raises(ValueError, match="version must be a positive integer"):
            export_saved_model(spec, tmp_path, version=version, warmup_requests=False)
    assert not (tmp_path / "tiny").exists()


def test_warmup_without_tensorflow_serving_api_is_a_clear_import_error(spec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match=r"pip install keras-faceset\[serving\]"):
        export_saved_model(spec, tmp_path)
    assert not (tmp_path / "tiny").exists()


def _batching_parameters_type():
    """TF Serving's BatchingParameters message (session_bundle_config.proto; not shipped in
    the tensorflow-serving-api wheel), rebuilt with the fields the file may use."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="test_batching.proto",
        package="test",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = proto.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    wrapped = ["max_batch_size", "batch_timeout_micros", "max_enqueued_batches"]
    for number, name in enumerate([*wrapped, "num_batch_threads"], start=1):
        message.field.add(
            name=name,
            number=number,
            label=field.LABEL_OPTIONAL,
            type=field.TYPE_MESSAGE,
            type_name=".google.protobuf.Int64Value",
        )
    message.field.add(
        name="allowed_batch_sizes", number=5, label=field.LABEL_REPEATED, type=field.TYPE_INT64
    )
    message.field.add(
        name="pad_variable_length_inputs",
        number=6,
        label=field.LABEL_OPTIONAL,
        type=field.TYPE_BOOL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test.BatchingParameters"))


def test_serving_config_files_parse_as_tf_serving_text_protos(tmp_path):
    write_serving_configs(tmp_path, "facenet")
    config = text_format.Parse(
        (tmp_path / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "facenet",
        "/models/facenet",
        "tensorflow",
    )
    assert model.model_version_policy.latest.num_versions == 1
    batching = text_format.Parse(
        (tmp_path / "batching_parameters.txt").read_text(), _batching_parameters_type()()
    )
    assert batching.max_batch_size.value == 64
    assert batching.batch_timeout_micros.value == 2000
    assert batching.num_batch_threads.value == 4
    assert batching.pad_variable_length_inputs


def test_existing_config_files_are_kept(tmp_path):
    (tmp_path / "models.config").write_text("edited by hand\n")
    write_serving_configs(tmp_path, "facenet")
    assert (tmp_path / "models.config").read_text() == "edited by hand\n"
    assert (tmp_path / "batching_parameters.txt").is_file()
