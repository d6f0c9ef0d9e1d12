"""Run the benchmarks, each in its own process: `python -m benchmarks.run [--quick] [--full]
[--only NAME ...]`. Each prints its tables and writes results/<name>.json. Run it niced on a
shared machine (`nice -n 5 python -m benchmarks.run`); the load average is in every JSON."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BENCHMARKS = {
    "backbone": "images/s of InceptionResNetV1 and DlibResNet vs facenet-pytorch and dlib",
    "hardware": "FLOPs x images/s as a share of the measured matmul peak",
    "set_cost": "NAN / QAN head time per set vs backbone time for the same frames",
    "training": "triplet / center / DSA loss step time and peak RSS vs a NumPy reference",
    "serving": "exported SavedModel latency p50/p99 vs the in-process Keras model",
    "alignment": "MTCNN detection + alignment images/s vs embedding images/s, same images",
    "precision": "folded backbones in bfloat16 vs float32: images/s and embedding agreement",
    "default_path": "FaceEmbedder's default (folded) path vs the unfolded graph: images/s",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and repeats")
    parser.add_argument("--full", action="store_true", help="backbone also at batch 128")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    flags = ["--quick"] * args.quick + ["--full"] * args.full
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"\n### {name}: {BENCHMARKS[name]}", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *flags])
        print(
            f"### {name}: exit {done.returncode} after {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        if done.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
