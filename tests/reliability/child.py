"""A process the reliability tests start, race and kill:

    python child.py load LOG READY GO   load dlib_resnet (into $KERAS_FACESET_HOME) once GO exists
    python child.py convert SIGNAL      load dlib_resnet; hang once its conversion is done
    python child.py write SIGNAL        load dlib_resnet; hang with its cache file half written
    python child.py export BASE SIGNAL  export a tiny model under BASE; hang before the rename

`load` appends a line to LOG each time it converts, creates READY when imported, and prints the
sha256 of its weights. The others create SIGNAL where they hang (for the parent to kill them).
"""

import hashlib
import sys
import time
from pathlib import Path

import keras


def hang(signal_file: Path) -> None:
    signal_file.write_text("here")
    time.sleep(600)


def digest(model: keras.Model) -> str:
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def main(stage: str, *args: str) -> None:
    from keras_faceset import zoo
    from keras_faceset.models.convert import dlib_dat

    convert = dlib_dat.convert_dlib_dat
    if stage == "load":
        log, ready, go = map(Path, args)

        def logged(path, sha256=None):
            with open(log, "a") as handle:
                handle.write("converted\n")
            return convert(path, sha256)

        dlib_dat.convert_dlib_dat = logged
        ready.write_text("ready")
        while not go.exists():
            time.sleep(0.01)
        print(digest(zoo.load("dlib_resnet")))
    elif stage == "convert":
        dlib_dat.convert_dlib_dat = lambda path, sha256=None: hang(Path(args[0]))
        zoo.load("dlib_resnet")
    elif stage == "write":
        save = keras.Model.save_weights

        def half_written(model, path, *rest, **kwargs):
            save(model, path, *rest, **kwargs)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            hang(Path(args[0]))

        keras.Model.save_weights = half_written
        zoo.load("dlib_resnet")
    elif stage == "export":
        from keras_faceset.export import ExportSpec, export_saved_model
        from keras_faceset.export.module import ServingModule
        from tests.export.helpers import tiny_backbone

        write_out = ServingModule.write_out

        def written(module, path):
            write_out(module, path)
            hang(Path(args[1]))

        ServingModule.write_out = written
        export_saved_model(
            ExportSpec.from_model(tiny_backbone(), "tiny"), args[0], warmup_requests=False
        )
    else:
        raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
