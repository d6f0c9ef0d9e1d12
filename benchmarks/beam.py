"""Gallery embedding throughput: `embed_gallery` on Beam's DirectRunner with 1 and 2 local
workers against the single-process `keras-faceset embed`, on the same LFW images.

Each run is a fresh process (what a user starts), timed end to end: interpreter and
TensorFlow start, model load (once per Beam worker), reading, alignment, embedding and
writing, on the first `--small` LFW images (about the start-up cost) and on the first
`--images`. The runs are interleaved in rounds; ratios are paired per round against the
single-process run. Needs the beam environment (``pip install '.[beam]'``) and the LFW folder.

    python -m benchmarks.beam --images 300 --small 20 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.alignment import LFW
from benchmarks.common import banner, machine_info, table, write_result

MODEL = "dlib_resnet"
BEAM = (
    "import sys; from keras_faceset.pipelines import embed_gallery; "
    f"embed_gallery([sys.argv[1]], sys.argv[2], {MODEL!r}, pipeline_args=sys.argv[3:])"
)
RUNS = {
    "keras-faceset embed (one process)": lambda folder, out: [
        *_cli(),
        "embed",
        MODEL,
        "-q",
        folder,
        "-o",
        f"{out}.parquet",
    ],
    "embed_gallery, DirectRunner, 1 worker": lambda folder, out: _beam(folder, out, 1),
    "embed_gallery, DirectRunner, 2 workers (multi_processing)": lambda folder, out: _beam(
        folder, out, 2, "--direct_running_mode", "multi_processing"
    ),
}


def _beam(folder, out, workers: int, *options: str) -> list[str]:
    """`embed_gallery` on the DirectRunner with `workers` workers, in a process of its own."""
    runner = ["--runner", "DirectRunner", "--direct_num_workers", str(workers), *options]
    return [sys.executable, "-c", BEAM, folder, out, *runner]


def _cli() -> list[str]:
    return [sys.executable, "-m", "keras_faceset.cli"]


def lfw_images(count: int) -> list[Path]:
    """The first `count` LFW images, people and files in sorted order."""
    images = sorted(LFW.rglob("*.jpg"))
    if len(images) < count:
        raise SystemExit(f"{LFW} holds {len(images)} images, fewer than {count}")
    return images[:count]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sizes = (args.small, args.images)
    machine = machine_info(model=MODEL, images=sizes)
    banner("beam", machine)
    work = Path(tempfile.mkdtemp(prefix="beam-bench-"))
    try:
        folders = {}
        for size in sizes:
            folders[size] = work / f"images-{size}"
            folders[size].mkdir()
            for image in lfw_images(size):
                os.symlink(image, folders[size] / image.name)
        seconds = {(name, size): [] for name in RUNS for size in sizes}
        for round_ in range(args.rounds):
            for size in sizes:
                for index, (name, command) in enumerate(RUNS.items()):
                    out = work / f"out-{round_}-{size}-{index}"
                    seconds[name, size].append(timed(command(str(folders[size]), str(out))))
                    print(f"round {round_}, {size} images: {name}: {seconds[name, size][-1]:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peer = next(iter(RUNS))
    rows, results = [], {}
    for name in RUNS:
        large, small = seconds[name, args.images], seconds[name, args.small]
        ratios = sorted(p / s for s, p in zip(large, seconds[peer, args.images], strict=True))
        results[name] = {
            "seconds": {str(size): seconds[name, size] for size in sizes},
            "images_per_s": args.images / statistics.median(large),
            "ratio_to_embed": ratios,
        }
        rows.append(
            [
                name,
                f"{statistics.median(small):.1f}",
                f"{statistics.median(large):.1f}",
                f"{results[name]['images_per_s']:.2f}",
                f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]",
            ]
        )
    headers = [
        "run",
        f"s, {args.small} images",
        f"s, {args.images} images",
        "images/s",
        "ratio to embed",
    ]
    print(table(headers, rows))
    print(write_result("beam", machine, rounds=args.rounds, results=results))


if __name__ == "__main__":
    main()
