"""Shared benchmark machinery: timing with medians and spread, machine facts, tables, JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def cli() -> argparse.ArgumentParser:
    """The flags every benchmark module takes when run alone (`python -m benchmarks.NAME`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--full", action="store_true", help="also the largest sizes")
    return parser


def timings(fn: Callable[[], object], repeats: int, warmup: int = 1, min_seconds: float = 0.0):
    """`(seconds, cores)`: wall seconds per call over `repeats` samples after `warmup` untimed
    calls, and the process CPU time over the wall time of all samples (about how many cores the
    call kept busy; all threads count).

    With `min_seconds`, each sample loops `fn` until that long has passed and records the mean
    per call (for calls far shorter than the timer's resolution and scheduling noise)."""
    for _ in range(warmup):
        fn()
    samples, wall, cpu = [], 0.0, time.process_time()
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        samples.append(elapsed / calls)
        wall += elapsed
    return samples, (time.process_time() - cpu) / wall


def interleaved(
    runners: dict[str, Callable[[], object]],
    repeats: int,
    items: int = 1,
    warmup: int = 2,
    min_seconds: float = 1.0,
) -> dict[str, dict]:
    """Time several candidates in rounds (A, B, C, A, B, C, ...) so that a change of machine
    load hits all of them alike: `{name: summary}` plus, under "rounds", the per-round seconds
    (for paired ratios, see `paired_ratio`)."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    rounds = {name: [] for name in runners}
    cpu = {name: 0.0 for name in runners}
    wall = {name: 0.0 for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            (seconds,), cores = timings(run, repeats=1, warmup=0, min_seconds=min_seconds)
            rounds[name].append(seconds)
            cpu[name] += cores * seconds
            wall[name] += seconds
    return {
        name: {**summary(rounds[name], items, cpu[name] / wall[name]), "seconds": rounds[name]}
        for name in runners
    }


def paired_ratio(stats: dict, peer: dict) -> dict:
    """Median and [min, max] over rounds of peer seconds / own seconds (> 1: faster than peer)."""
    ratios = sorted(p / s for s, p in zip(stats["seconds"], peer["seconds"], strict=True))
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}


def ratio_text(ratio: dict) -> str:
    return f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]"


def summary(seconds: Sequence[float], items: int = 1, cores: float | None = None) -> dict:
    """Median and spread of `items / seconds` (a rate) and of the seconds themselves."""
    rates = sorted(items / s for s in seconds)
    return {
        "cores_busy": cores,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "median_rate": statistics.median(rates),
        "min_rate": rates[0],
        "max_rate": rates[-1],
        "repeats": len(seconds),
    }


def spread(stats: dict) -> str:
    """'median [min-max]' of a rate summary, e.g. '21.3 [19.8-22.0]'."""
    return f"{stats['median_rate']:.1f} [{stats['min_rate']:.1f}-{stats['max_rate']:.1f}]"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(**extra) -> dict:
    """Cores, CPU model, library versions, date and load average (at the time of the call)."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "load_average_1_5_15min": load_average(),
    }
    for module in ("numpy", "tensorflow", "keras", "torch", "dlib"):
        try:
            info[f"{module}_version"] = __import__(module).__version__
        except ImportError:
            continue
    return {**info, **extra}


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A plain Markdown table (pasted as is into docs/performance.md)."""
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_result(name: str, machine: dict, **payload) -> Path:
    """Write `results/<name>.json` with the machine info (load average re-read at the end)."""
    RESULTS.mkdir(exist_ok=True)
    machine = {**machine, "load_average_at_end": load_average()}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine, **payload}, indent=2) + "\n")
    return path


def peak_rss_mb() -> float:
    """This process's peak resident set size so far: VmHWM of /proc/self/status.

    (Not getrusage's ru_maxrss: Linux carries it over from the parent across fork + exec, so a
    small child launched by a large parent reports the parent's peak.)"""
    return _status_mb("VmHWM")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def current_rss_mb() -> float:
    """This process's resident set size now (VmRSS of /proc/self/status)."""
    return _status_mb("VmRSS")


def banner(name: str, machine: dict) -> None:
    print(
        f"\n== {name} == {machine['date']}  {machine['cores']} cores {machine['cpu_model']}  "
        f"load {machine['load_average_1_5_15min']}",
        flush=True,
    )


MATMUL_SIZE = 4096


def matmul_runner(size: int = MATMUL_SIZE):
    """`size x size` float32 matmul by a traced tf.function (TF's default threads)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((size, size), dtype=np.float32))
    b = tf.constant(rng.standard_normal((size, size), dtype=np.float32))
    fn = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    return lambda: fn(a, b).numpy()
