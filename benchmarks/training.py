"""Training-step time of the losses (value + gradients, 128-d embeddings) at batch 128, 512 and
2048: ours (keras_faceset.losses, one tf.function per step) against a vectorised NumPy
reference of the same loss with hand-derived gradients, and, for triplet and center loss, the
straightforward Keras version ours replaced ("before": tfa's `(B, B, B)` semi-hard mining, a
one-hot matmul center update). Each (loss, batch, implementation) runs in its own child process
so that its peak RSS (VmHWM) is its own; each child has an 8 GiB address-space limit
(RLIMIT_AS) so that a loss too big for the machine fails alone."""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys

import numpy as np

from benchmarks.common import (
    banner,
    cli,
    current_rss_mb,
    interleaved,
    machine_info,
    paired_ratio,
    peak_rss_mb,
    ratio_text,
    summary,
    table,
    timings,
    write_result,
)

DIM = 128
PER_IDENTITY = 4
NUM_CLASSES = 1000  # center loss classes; DSA: 1000 identity + 1000 sequence agents
MEMORY_LIMIT = 8 << 30
MARGIN = 0.2
CENTER_ALPHA, CENTER_WEIGHT = 0.5, 0.003
DSA = {"lambda_": 0.5, "alpha": 2.0, "beta": 1.0, "p": 0.01}
LOSSES = ("triplet_semi_hard", "center", "dsa")


def batch_data(batch: int, loss: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings and P x K labels (K = 4 images per identity); for DSA every other
    identity is a sequence class instead (label NUM_CLASSES + id)."""
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = (np.arange(batch) // PER_IDENTITY).astype(np.int32)
    if loss == "dsa":
        labels = np.where(labels % 2 == 1, NUM_CLASSES + labels, labels).astype(np.int32)
    return x, labels


# ------------------------------------------------------------------------ NumPy references


def ref_triplet_semi_hard(labels, x, margin=MARGIN):
    """Semi-hard triplet loss (tfa semantics) and d loss / d x, O(B^2 log B) time and O(B^2)
    memory: each anchor's negative distances are sorted once and the semi-hard negative of a
    positive pair is found by binary search (`searchsorted` on rows offset apart)."""
    x = x.astype(np.float64)
    batch = len(x)
    norms = (x * x).sum(1)
    d = np.maximum(norms[:, None] - 2 * x @ x.T + norms[None, :], 0.0)
    np.fill_diagonal(d, 0.0)
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(batch, dtype=bool)
    negative = ~same
    beyond = d.max() + 1.0  # stands for "not a negative": sorts after every distance
    offset = 2.0 * beyond * np.arange(batch)[:, None]  # keeps the rows apart once flattened
    negatives_sorted = np.sort(np.where(negative, d, beyond), axis=1)
    count_neg = negative.sum(1)
    anchor, pos = np.nonzero(positive & (count_neg > 0)[:, None])
    flat = (negatives_sorted + offset).ravel()
    index = np.searchsorted(flat, d[anchor, pos] + offset[anchor, 0], side="right")
    index -= anchor * batch  # position within the anchor's sorted row
    farthest = np.where(negative, d, -np.inf).max(1)
    outside = index < count_neg[anchor]
    d_neg = np.where(
        outside, negatives_sorted[anchor, np.minimum(index, batch - 1)], farthest[anchor]
    )
    hinge = d[anchor, pos] - d_neg + margin
    count = max(len(anchor), 1)
    loss = np.maximum(hinge, 0).sum() / count
    # d loss / d D: +1/count on (a, p), -1/count on (a, n) for each active triplet, where n is
    # the negative whose distance was picked (the first one at that distance).
    active = hinge > 0
    a, p, dn = anchor[active], pos[active], d_neg[active]
    n = np.argmax(np.where(negative[a], d[a], np.nan) == dn[:, None], axis=1)
    grad_d = np.zeros((batch, batch))
    np.add.at(grad_d, (a, p), 1.0 / count)
    np.add.at(grad_d, (a, n), -1.0 / count)
    return loss, _grad_from_distance_grad(grad_d, x)


def _grad_from_distance_grad(grad_d, x):
    """d loss / d x for D_ij = |x_i|^2 - 2 x_i.x_j + |x_j|^2: 2 (diag(G 1 + G' 1) - G - G') x."""
    sym = grad_d + grad_d.T
    return 2.0 * (sym.sum(1)[:, None] * x - sym @ x)


def ref_center(labels, x, centers, alpha=CENTER_ALPHA, weight=CENTER_WEIGHT):
    """weight * 1/2 mean ||x - c_y||^2, its gradient, and the paper's center update."""
    diff = x - centers[labels]
    loss = weight * 0.5 * (diff * diff).sum(1).mean()
    grad = weight * diff / len(x)
    counts = np.bincount(labels, minlength=len(centers))[:, None]
    sums = np.zeros_like(centers)
    np.add.at(sums, labels, x)
    new_centers = centers - alpha * (counts * centers - sums) / (1.0 + counts)
    return loss, grad, new_centers


def ref_dsa_mask(labels, num_centers, num_identities, p, rng):
    """SeqFace negative sampling: allowed agents kept with probability p, else one at random."""
    agents = np.arange(num_centers)[None, :]
    allowed = (agents != labels[:, None]) & (
        (labels[:, None] < num_identities) | (agents < num_identities)
    )
    uniform = rng.random((2, *allowed.shape))
    drawn = allowed & (uniform[0] < p)
    fallback = np.zeros_like(allowed)
    fallback[np.arange(len(labels)), np.where(allowed, uniform[1], -1).argmax(1)] = True
    fallback &= allowed
    return np.where(drawn.any(1, keepdims=True), drawn, fallback), allowed


def ref_dsa(labels, x, centers, mask, allowed, lambda_, alpha, beta):
    """DSA loss with a given negative mask, and d loss / d x, d loss / d centers."""
    batch = len(x)
    x_norm = np.linalg.norm(x, axis=1, keepdims=True)
    c_norm = np.linalg.norm(centers, axis=1, keepdims=True)
    xn, cn = x / x_norm, centers / c_norm
    d = (1.0 - xn @ cn.T) / 2.0
    rows = np.arange(batch)
    positive = d[rows, labels]
    hinge = alpha * positive[:, None] - d + beta
    mask = (mask & allowed).astype(x.dtype)
    m = np.maximum(mask.sum(1), 1.0)
    negative = (np.maximum(hinge, 0) * mask).sum(1) / m
    loss = (lambda_ * positive + (1 - lambda_) * negative).mean()
    active = mask * (hinge > 0) * ((1 - lambda_) / batch / m)[:, None]  # d loss / d hinge
    grad_d = -active
    grad_d[rows, labels] += lambda_ / batch + alpha * active.sum(1)
    grad_cos = -grad_d / 2.0
    dxn, dcn = grad_cos @ cn, grad_cos.T @ xn
    dx = (dxn - xn * (xn * dxn).sum(1, keepdims=True)) / x_norm
    dc = (dcn - cn * (cn * dcn).sum(1, keepdims=True)) / c_norm
    return loss, dx, dc


# ------------------------------------------------------------------------ before (Keras)


def before_semi_hard(labels, embeddings, margin=MARGIN):
    """tfa's `TripletSemiHardLoss` algorithm in keras.ops: a `(B, B, B)` mask of the negatives
    farther than each positive, masked min over it (what `mining.semi_hard` did before)."""
    from keras import ops

    from keras_faceset.losses.distances import pairwise_distance
    from keras_faceset.losses.mining import (
        identity_adjacency,
        identity_masks,
        masked_max,
        masked_min,
    )

    positive, negative = identity_masks(identity_adjacency(labels))
    distances = pairwise_distance(embeddings)
    d_an, d_ap = distances[:, None, :], distances[:, :, None]
    outside = ops.logical_and(negative[:, None, :], ops.greater(d_an, d_ap))
    closest = masked_min(ops.broadcast_to(d_an, ops.shape(outside)), outside, axis=2)
    d_neg = ops.where(
        ops.any(outside, axis=2), closest, masked_max(distances, negative, axis=1)[:, None]
    )
    pairs = ops.logical_and(positive, ops.any(negative, axis=1, keepdims=True))
    hinge = ops.where(pairs, ops.relu(distances - d_neg + margin), 0)
    return ops.sum(hinge) / ops.maximum(ops.sum(ops.cast(pairs, hinge.dtype)), 1)


def before_center_update(labels, embeddings, centers, alpha):
    """The center update with a `(B, C)` one-hot matrix (what `updated_centers` did before)."""
    from keras import ops

    members = ops.one_hot(labels, ops.shape(centers)[0], dtype=centers.dtype)
    counts = ops.expand_dims(ops.sum(members, axis=0), -1)
    class_sums = ops.matmul(ops.transpose(members), ops.stop_gradient(embeddings))
    return centers - alpha * (counts * centers - class_sums) / (1.0 + counts)


# ------------------------------------------------------------------------ children


def ours_step(loss: str, batch: int, before: bool = False):
    """A no-argument training step of our loss: value and gradients (and the center update);
    with `before`, the implementation ours replaced (triplet and center only)."""
    import tensorflow as tf

    from keras_faceset.losses import DSALoss, center_loss, triplet_loss
    from keras_faceset.losses.center import updated_centers

    x, labels = batch_data(batch, loss)
    emb, labels_t = tf.Variable(x), tf.constant(labels)
    variables, centers, layer = [emb], None, None
    if loss == "center":
        rng = np.random.default_rng(0)
        centers = tf.Variable(rng.normal(size=(NUM_CLASSES, DIM)).astype(np.float32))
        update = before_center_update if before else updated_centers
    elif loss == "dsa":
        layer = DSALoss(NUM_CLASSES, NUM_CLASSES, dim=DIM, seed=0, **DSA)
        layer([emb, labels_t], training=True)
        variables = [emb, *layer.trainable_variables]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            if loss == "triplet_semi_hard":
                value = (
                    before_semi_hard(labels_t, emb)
                    if before
                    else triplet_loss(labels_t, emb, mining="semi_hard", margin=MARGIN)
                )
            elif loss == "center":
                value = CENTER_WEIGHT * center_loss(labels_t, emb, centers)
            else:
                layer([emb, labels_t], training=True)
                value = tf.add_n(layer.losses)
        if centers is not None:
            centers.assign(update(labels_t, emb, centers, CENTER_ALPHA))
        return value, tape.gradient(value, variables)

    return lambda: [t.numpy() for t in tf.nest.flatten(step())]


def reference_step(loss: str, batch: int):
    x, labels = batch_data(batch, loss)
    x = x.astype(np.float64)
    if loss == "triplet_semi_hard":
        return lambda: ref_triplet_semi_hard(labels, x)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2 * NUM_CLASSES if loss == "dsa" else NUM_CLASSES, DIM))
    if loss == "center":
        state = {"centers": centers}

        def center_step():
            value, grad, state["centers"] = ref_center(labels, x, state["centers"])
            return value, grad

        return center_step

    def dsa_step():
        mask, allowed = ref_dsa_mask(labels, 2 * NUM_CLASSES, NUM_CLASSES, DSA["p"], rng)
        return ref_dsa(labels, x, centers, mask, allowed, DSA["lambda_"], DSA["alpha"], DSA["beta"])

    return dsa_step


def check_reference(loss: str) -> float:
    """Max |ours - reference| over the value and gradients at batch 128 (same inputs, same
    negative mask for DSA): the reference computes the same thing."""
    import tensorflow as tf

    from keras_faceset.losses import center_loss, dsa_loss, triplet_loss

    x, labels = batch_data(128, loss)
    rng = np.random.default_rng(1)
    xt = tf.constant(x)
    if loss == "triplet_semi_hard":
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = triplet_loss(labels, xt, mining="semi_hard", margin=MARGIN)
        ours = [value, tape.gradient(value, xt)]
        ref = ref_triplet_semi_hard(labels, x.astype(np.float64))
    elif loss == "center":
        centers = rng.normal(size=(NUM_CLASSES, DIM)).astype(np.float32)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = CENTER_WEIGHT * center_loss(labels, xt, tf.constant(centers))
        ours = [value, tape.gradient(value, xt)]
        ref = ref_center(labels, x.astype(np.float64), centers.astype(np.float64))[:2]
    else:
        centers = tf.constant(rng.normal(size=(2 * NUM_CLASSES, DIM)).astype(np.float32))
        mask, allowed = ref_dsa_mask(labels, 2 * NUM_CLASSES, NUM_CLASSES, 0.05, rng)
        with tf.GradientTape() as tape:
            tape.watch([xt, centers])
            value = dsa_loss(
                labels,
                xt,
                centers,
                num_identities=NUM_CLASSES,
                negative_mask=mask.astype(np.float32),
                lambda_=DSA["lambda_"],
                alpha=DSA["alpha"],
                beta=DSA["beta"],
            )
        ours = [value, *tape.gradient(value, [xt, centers])]
        ref = ref_dsa(
            labels,
            x.astype(np.float64),
            centers.numpy().astype(np.float64),
            mask,
            allowed,
            DSA["lambda_"],
            DSA["alpha"],
            DSA["beta"],
        )
    return max(float(np.abs(np.asarray(o) - r).max()) for o, r in zip(ours, ref, strict=True))


def child(loss: str, batch: int, impl: str, repeats: int) -> dict:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    result = {"loss": loss, "batch": batch, "impl": impl}
    if impl != "reference":
        import tensorflow as tf  # noqa: F401  (imported before the baseline RSS)

        if batch == 128 and impl == "ours":
            result["max_abs_diff_vs_reference_at_128"] = check_reference(loss)
    step = (
        reference_step(loss, batch)
        if impl == "reference"
        else ours_step(loss, batch, before=impl == "before")
    )
    result["baseline_rss_mb"] = current_rss_mb()
    try:
        seconds, cores = timings(step, repeats=repeats, warmup=1, min_seconds=0.5)
    except Exception as error:  # noqa: BLE001  (out of memory under the limit: report it)
        oom = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", str(error))
        result["error"] = oom.group(0) if oom else f"{type(error).__name__}: {str(error)[:200]}"
        result["peak_rss_mb"] = peak_rss_mb()
        return result
    result.update(summary(seconds, items=batch, cores=cores))
    result["seconds"] = seconds
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_child(loss: str, batch: int, impl: str, repeats: int) -> dict:
    command = [
        sys.executable,
        "-m",
        "benchmarks.training",
        "--child",
        loss,
        str(batch),
        impl,
        "--repeats",
        str(repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {
            "loss": loss,
            "batch": batch,
            "impl": impl,
            "error": f"child exited {done.returncode}: {tail[0][:200]}",
        }
    return json.loads(lines[-1])


HAS_BEFORE = ("triplet_semi_hard", "center")


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return r["error"].replace("OOM when allocating tensor with", "OOM (8 GiB limit):")
    return f"{1e3 * r['median_s']:.1f} [{1e3 * r['min_s']:.1f}-{1e3 * r['max_s']:.1f}]"


def _rss(r: dict | None) -> str:
    if r is None or "baseline_rss_mb" not in r:
        return "-"
    return f"{r['peak_rss_mb']:.0f} (+{r['peak_rss_mb'] - r['baseline_rss_mb']:.0f})"


def _speed(ours: dict, other: dict | None) -> str:
    if other is None or "error" in ours or "error" in other:
        return "-"
    return f"{other['median_s'] / ours['median_s']:.2f}x"


def main(quick: bool = False, full: bool = False) -> dict:
    machine = machine_info(
        memory_limit_per_child_gib=MEMORY_LIMIT / 2**30,
        rss="VmHWM of /proc/self/status in one child process per config",
    )
    banner("training step", machine)
    batches = (128, 512) if quick else (128, 512, 2048)
    repeats = 3 if quick else 5
    rows, lines = [], []
    for loss in LOSSES:
        for batch in batches:
            impls = ["ours", "reference"] + ["before"] * (loss in HAS_BEFORE)
            # Rotate which implementation runs first, so that load drift does not favour one.
            shift = batch.bit_length() % len(impls)
            order = impls[shift:] + impls[:shift]
            pair = {impl: run_child(loss, batch, impl, repeats) for impl in order}
            rows += [pair[impl] for impl in impls]
            ours, ref, before = pair["ours"], pair["reference"], pair.get("before")
            lines.append(
                [
                    loss,
                    batch,
                    _cell(ours),
                    _cell(ref),
                    _cell(before),
                    _speed(ours, ref),
                    _speed(ours, before),
                    _rss(ours),
                    _rss(ref),
                    _rss(before),
                    ours.get("max_abs_diff_vs_reference_at_128", ""),
                ]
            )
            print(f"  {loss} {batch} done", flush=True)
    print(
        table(
            [
                "loss",
                "batch",
                "ours ms/step median [min-max]",
                "reference ms/step",
                "before ms/step",
                "ours vs ref",
                "ours vs before",
                "ours peak RSS MB (+step)",
                "ref peak RSS MB (+step)",
                "before peak RSS MB (+step)",
                "max |ours-ref| @128",
            ],
            lines,
        )
    )
    path = write_result(
        "training",
        machine,
        rows=rows,
        notes="step = loss value + gradients w.r.t. the embeddings (and DSA agents; center "
        "loss also updates its centers); ours: one tf.function step on TF variables; "
        "reference: vectorised NumPy float64 with hand-derived gradients (semi-hard "
        "triplet by sorting, O(B^2 log B)); before: the Keras implementation ours "
        "replaced (tfa's (B, B, B) semi-hard mining; one-hot matmul center update). "
        "Peak RSS = VmHWM in one child process per config; (+step) = peak minus RSS "
        "after imports and setup. Ratio = other median / ours median, children run "
        "back to back.",
    )
    print(f"wrote {path}")
    return {"rows": rows}


def paired(quick: bool = False) -> dict:
    """Triplet and center loss: ours, before and the reference timed in interleaved rounds in
    one process (no RSS), for paired ratios on a loaded machine; `before` is left out at 2048
    (it does not fit). Writes results/training_paired.json."""
    machine = machine_info()
    banner("training step, paired", machine)
    batches = (128, 512) if quick else (128, 512, 2048)
    rows = []
    for loss in HAS_BEFORE:
        for batch in batches:
            runners = {"ours": ours_step(loss, batch), "reference": reference_step(loss, batch)}
            if not (loss == "triplet_semi_hard" and batch >= 2048):
                runners["before"] = ours_step(loss, batch, before=True)
            stats = interleaved(runners, repeats=3 if quick else 7, warmup=1, min_seconds=0.5)
            rows.append(
                {
                    "loss": loss,
                    "batch": batch,
                    **{f"{k}_median_s": v["median_s"] for k, v in stats.items()},
                    **{
                        f"ours_vs_{k}": paired_ratio(stats["ours"], v)
                        for k, v in stats.items()
                        if k != "ours"
                    },
                }
            )
            print(f"  {loss} {batch} done", flush=True)
    lines = [
        [
            r["loss"],
            r["batch"],
            f"{1e3 * r['ours_median_s']:.1f}",
            f"{1e3 * r['reference_median_s']:.1f}",
            f"{1e3 * r['before_median_s']:.1f}" if "before_median_s" in r else "-",
            ratio_text(r["ours_vs_reference"]),
            ratio_text(r["ours_vs_before"]) if "ours_vs_before" in r else "-",
        ]
        for r in rows
    ]
    print(
        table(
            [
                "loss",
                "batch",
                "ours ms",
                "reference ms",
                "before ms",
                "ours vs reference (paired)",
                "ours vs before (paired)",
            ],
            lines,
        )
    )
    path = write_result(
        "training_paired",
        machine,
        rows=rows,
        notes="One process, interleaved rounds (ours, reference, before), "
        "each sample >= 0.5 s; ours_vs_X = X seconds / ours seconds per "
        "round, median [min-max].",
    )
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    parser = cli()
    parser.add_argument("--child", nargs=3, metavar=("LOSS", "BATCH", "IMPL"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--paired",
        action="store_true",
        help="triplet and center in interleaved rounds in one process",
    )
    args = parser.parse_args()
    if args.child:
        loss, batch, impl = args.child
        print(json.dumps(child(loss, int(batch), impl, args.repeats)))
    elif args.paired:
        paired(quick=args.quick)
    else:
        main(quick=args.quick, full=args.full)
