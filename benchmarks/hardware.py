"""Hardware limit: FLOPs per image x images/s as a share of the machine's measured float32 peak
(a large matmul with TensorFlow on all cores), all measured in one process."""

from __future__ import annotations

from benchmarks.backbone import (
    DLIB_PEER,
    IRV1_PEER,
    IRV1_PEER_1T,
    build_models,
    dlib_runner,
    facenet_pytorch_model,
    keras_runner,
    torch_runner,
)
from benchmarks.common import (
    MATMUL_SIZE,
    banner,
    cli,
    interleaved,
    machine_info,
    matmul_runner,
    spread,
    table,
    write_result,
)
from benchmarks.flops import model_flops

BATCH = 32


def main(quick: bool = False, full: bool = False) -> dict:
    machine = machine_info(matmul=f"{MATMUL_SIZE}x{MATMUL_SIZE} float32, tf.function")
    banner("hardware limit", machine)
    repeats = 3 if quick else 5
    models = build_models()
    irv1_flops = model_flops(models["irv1_folded"])
    dlib_flops = model_flops(models["dlib_folded"])
    assert irv1_flops == model_flops(models["irv1"]) and dlib_flops == model_flops(models["dlib"])
    torch_model = facenet_pytorch_model()
    runners = {
        "matmul": matmul_runner(),
        "InceptionResNetV1 ours folded, tf.function": keras_runner(
            models["irv1_folded"], BATCH, 160, "tf.function"
        ),
        f"InceptionResNetV1 {IRV1_PEER}": torch_runner(torch_model, BATCH),
        f"InceptionResNetV1 {IRV1_PEER_1T}": torch_runner(
            torch_model, BATCH, threads=1, channels_last=True
        ),
        "DlibResNet ours folded, tf.function": keras_runner(
            models["dlib_folded"], BATCH, 150, "tf.function"
        ),
        f"DlibResNet {DLIB_PEER}": dlib_runner(BATCH),
    }
    stats = interleaved(runners, repeats, items=BATCH)
    matmul = stats.pop("matmul")
    peak = 2 * MATMUL_SIZE**3 / matmul["min_s"]
    rows, lines = [], []
    for name, row in stats.items():
        flops = irv1_flops if name.startswith("InceptionResNetV1") else dlib_flops
        achieved = flops * row["median_rate"]
        rows.append(
            {
                "row": name,
                "flops_per_image": flops,
                **row,
                "achieved_gflops": achieved / 1e9,
                "percent_of_peak": 100 * achieved / peak,
            }
        )
        lines.append(
            [
                name,
                f"{flops / 1e9:.2f}",
                spread(row),
                f"{achieved / 1e9:.1f}",
                f"{100 * achieved / peak:.1f}%",
            ]
        )
    median_peak = 2 * MATMUL_SIZE**3 / matmul["median_s"]
    print(
        f"measured peak: {peak / 1e9:.1f} GFLOP/s (best of {repeats} rounds of a "
        f"{MATMUL_SIZE}^2 float32 matmul; median {median_peak / 1e9:.1f})"
    )
    print(
        table(
            [
                "model, path (batch 32)",
                "GFLOP/image",
                "images/s median [min-max]",
                "GFLOP/s",
                "% of peak",
            ],
            lines,
        )
    )
    path = write_result(
        "hardware",
        machine,
        peak_gflops=peak / 1e9,
        matmul=matmul,
        rows=rows,
        notes="FLOPs = 2 x multiply-adds of Conv/Dense layers (benchmarks/flops.py); "
        "% of peak = FLOPs/image x median images/s / best matmul rate; the matmul and "
        "the models were timed in interleaved rounds in one process.",
    )
    print(f"wrote {path}")
    return {"peak_gflops": peak / 1e9, "rows": rows}


if __name__ == "__main__":
    main(**vars(cli().parse_args()))
