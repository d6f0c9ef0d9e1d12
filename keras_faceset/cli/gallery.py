"""`gallery create|add|remove|list|calibrate|repair`, `identify` and `cluster`: 1:N search over
enrolled people, and grouping the faces of an album."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from keras_faceset.cli.common import add_model_options, make_embedder, write_csv

PHOTO_FIELDS = ("source", "face", "box", "detector_score")
MATCH_FIELDS = ("person", "score", "threshold", "threshold_source", "candidates", "error")


def register(add_command) -> None:
    """Add `gallery`, `identify` and `cluster` through `add_command(name, **kwargs)`."""
    gallery = add_command(
        "gallery",
        help="enrol people into a gallery folder (create, add, remove, list, calibrate, repair)",
        description="A gallery is a folder: Parquet tables of people, media and face "
        "embeddings, and a vector index, written atomically under a lock (readers never see a "
        "half-written gallery). One template per person is made by the model's set head from "
        "all the person's faces.",
    )
    actions = gallery.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new, empty gallery")
    create.add_argument("path")
    create.add_argument("--model", default="dlib_resnet", help="a preset (default: %(default)s)")
    create.add_argument("--templates", choices=("person", "media"), default="person")
    create.add_argument("--index", choices=("auto", "exact", "hnsw"), default="auto")
    add = actions.add_parser(
        "add",
        help="enrol a person from photos, folders or videos (or every person of --people)",
    )
    add.add_argument("path")
    add.add_argument("person", nargs="?", help="the person's name")
    add.add_argument("media", nargs="*", help="photos, folders of photos, videos")
    add.add_argument(
        "--people",
        metavar="ROOT",
        help="enrol ROOT/<person>/<photos or videos> and ROOT/<person>.jpg, one person each",
    )
    add.add_argument(
        "--embedded",
        metavar="OUTPUT",
        help="enrol what `keras-faceset embed --runner` wrote to OUTPUT (a person per set id)",
    )
    add.add_argument("--append", action="store_true", help="add media to an enrolled person")
    add.add_argument("--max-frames", type=int, default=16, help="frames sampled from a video")
    remove = actions.add_parser("remove", help="remove people")
    remove.add_argument("path")
    remove.add_argument("people", nargs="+")
    listing = actions.add_parser("list", help="the enrolled people")
    listing.add_argument("path")
    calibrate = actions.add_parser(
        "calibrate", help="the open-set threshold at a false positive identification rate"
    )
    calibrate.add_argument("path")
    calibrate.add_argument("--fpir", type=float, default=1e-2)
    repair = actions.add_parser("repair", help="rebuild the index from the stored embeddings")
    repair.add_argument("path")
    repair.add_argument("--version", default=None, help="roll back to this kept version")
    for action in (create, add, remove, listing, calibrate, repair):
        action.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    gallery.set_defaults(run=run_gallery)

    identify = add_command(
        "identify",
        help="who is in these photos and videos? (every face searched in a gallery)",
        description="Photos: every face is searched in GALLERY; a photo that cannot be read or "
        "shows no face gets a row with its error. Videos: faces found on every --step-th frame "
        "are linked into tracks, and each track is identified by its set-head template. A "
        "match below the open-set threshold (the gallery's calibrated one at --fpir, else the "
        "preset's LFW threshold: the threshold_source column says which) is 'unknown'.",
    )
    identify.add_argument("gallery")
    identify.add_argument("inputs", nargs="+", help="photos, folders of photos, videos")
    identify.add_argument("-k", type=int, default=5, help="candidates per face (default 5)")
    identify.add_argument("--fpir", type=float, default=1e-2)
    identify.add_argument("--threshold", type=float, default=None, help="cosine similarity")
    identify.add_argument("--step", type=int, default=5, help="videos: every step-th frame")
    identify.add_argument("--max-faces", type=int, default=None, help="largest faces per photo")
    identify.add_argument("-o", "--output", default=None, help="out.csv or out.json")
    identify.add_argument(
        "--draw",
        metavar="DIR",
        default=None,
        help="write each photo with its faces boxed and named, and a contact sheet per video "
        "track (its best frames), as PNGs into DIR",
    )
    identify.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    identify.set_defaults(run=run_identify)

    cluster = add_command(
        "cluster",
        help="group the faces of an album by person",
        description="Every face of the photos is embedded and clustered (average linkage cut "
        "at the preset's verification threshold, or --threshold); OUT gets clusters.csv "
        "(source, face, box, cluster; -1 for a face alone with --min-size 2) and a folder of "
        "face chips per cluster.",
    )
    add_model_options(cluster)
    cluster.add_argument("inputs", nargs="+", help="photos and folders of photos")
    cluster.add_argument("-o", "--output", required=True, help="output folder")
    cluster.add_argument("--method", choices=("agglomerative", "graph"), default="agglomerative")
    cluster.add_argument("--threshold", type=float, default=None, help="cosine distance")
    cluster.add_argument("--min-size", type=int, default=1, help="smaller clusters get -1")
    cluster.set_defaults(run=run_cluster)


def _quiet(args: argparse.Namespace) -> None:
    if args.quiet:
        from keras_faceset.progress import set_enabled

        set_enabled(False)


def run_gallery(args: argparse.Namespace) -> int:
    from keras_faceset.gallery import Gallery

    _quiet(args)
    if args.action == "create":
        gallery = Gallery.create(args.path, args.model, args.templates, args.index)
        print(f"created {gallery.path} ({args.model}, {args.templates} templates)")
    elif args.action == "add":
        return _add(args, Gallery.open(args.path))
    elif args.action == "remove":
        try:
            Gallery.open(args.path).remove(args.people)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        print(f"removed {', '.join(args.people)}")
    elif args.action == "list":
        table = Gallery.open(args.path).list()
        print(table.to_string(index=False) if len(table) else f"{args.path}: no one enrolled")
    elif args.action == "calibrate":
        result = Gallery.open(args.path).calibrate(args.fpir)
        print(
            f"threshold {result['threshold']:.4f} (cosine similarity) at FPIR "
            f"{result['fpir']:g}, from {result['probes']} probes of {result['people']} people"
        )
    else:
        gallery = Gallery.repair(args.path, args.version)
        print(f"repaired {gallery.path}: version {gallery.version}")
    return 0


def _add(args: argparse.Namespace, gallery) -> int:
    given = [args.person is not None, args.people is not None, args.embedded is not None]
    if sum(given) != 1:
        raise ValueError("give PERSON MEDIA..., --people ROOT or --embedded OUTPUT")
    if args.people is not None:
        people = _people_folder(Path(args.people))
    elif args.embedded is not None:
        people = None
    elif not args.media:
        raise ValueError(f"give the photos, folders or videos of {args.person}")
    else:
        people = {args.person: args.media}
    try:
        if people is None:
            from keras_faceset.pipelines import add_to_gallery

            reports = add_to_gallery(gallery, args.embedded, append=args.append)
        else:
            reports = gallery.add_many(people, append=args.append, max_frames=args.max_frames)
    except ValueError as error:  # the library's remedy, in the command line's words
        raise ValueError(str(error).replace("append=True", "--append")) from None
    for report in reports:
        if report.enrolled:
            print(f"{report.person}: {report.media} media, {report.faces} faces")
        else:
            print(f"{report.person}: not enrolled ({report.message})", file=sys.stderr)
        for source, why in report.skipped_media.items():
            print(f"skipped {source}: {why}", file=sys.stderr)
        for frame in report.frames_without_face:
            print(f"note: no face found in {frame}", file=sys.stderr)
    enrolled = [report for report in reports if report.enrolled]
    skipped = sum(len(report.skipped_media) for report in reports)
    print(
        f"added {len(enrolled)} of {len(reports)} people "
        f"({sum(r.media for r in enrolled)} media, {sum(r.faces for r in enrolled)} faces); "
        f"skipped {skipped} media" + ("" if enrolled else f": nothing written to {gallery.path}")
    )
    return 0 if enrolled else 1


def _people_folder(root: Path) -> dict[str, list[str]]:
    """ROOT/<person>/<media> and ROOT/<person>.<ext> (face_recognition's known_people/)."""
    from keras_faceset.data.folders import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    if not root.is_dir():
        raise FileNotFoundError(f"--people {root} is not a folder")
    people: dict[str, list[str]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            people[entry.name] = [str(entry)]
        elif entry.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS):
            people.setdefault(entry.stem, []).append(str(entry))
    if not people:
        raise ValueError(f"{root} holds no person folders or photos")
    return people


def run_identify(args: argparse.Namespace) -> int:
    from keras_faceset.data.inputs import is_video
    from keras_faceset.gallery import Gallery
    from keras_faceset.gallery.identify import identify_photos, identify_video

    _quiet(args)
    gallery = Gallery.open(args.gallery)
    search = {"k": args.k, "fpir": args.fpir, "threshold": args.threshold}
    videos = [p for p in args.inputs if Path(p).is_file() and is_video(p)]
    photos = [p for p in args.inputs if p not in videos]
    rows, faces, tracks = [], [], []
    if photos:
        faces = identify_photos(gallery, photos, max_faces=args.max_faces, **search)
        rows += [_photo_row(match) for match in faces]
    for video in videos:
        found = identify_video(gallery, video, step=args.step, **search)
        tracks += found
        rows += [_track_row(track) for track in found]
        if not found:
            rows.append({"source": video, "kind": "video", "error": f"no face found in {video}"})
    _write_rows(rows, args.output)
    if args.draw:
        _draw(Path(args.draw), faces, tracks, gallery.embedder.preset.crop_spec.size)
    named = sum(1 for row in rows if row.get("person") not in (None, "", "unknown"))
    print(f"{len(rows)} faces or tracks, {named} identified", file=sys.stderr)
    return 0


def _match_cells(identification) -> dict:
    if identification is None:
        return {}
    top = "; ".join(f"{name}:{score:.4f}" for name, score in identification.candidates)
    return {
        "person": identification.person,
        "score": round(identification.score, 6),
        "threshold": round(identification.threshold, 6),
        "threshold_source": identification.threshold_source,
        "candidates": top,
    }


def _photo_row(match) -> dict:
    return {
        "source": match.source,
        "kind": "photo",
        "face": match.face,
        "box": match.box,
        "detector_score": match.detector_score,
        **_match_cells(match.identification),
        "error": match.error,
    }


def _track_row(track) -> dict:
    return {
        "source": track.source,
        "kind": "video",
        "track": track.track_id,
        "first_frame": track.first_frame,
        "last_frame": track.last_frame,
        "detections": track.detections,
        "frames": track.frames,
        "weights": track.weights,
        **_match_cells(track.identification),
    }


COLUMNS = (
    "source",
    "kind",
    "face",
    "track",
    "box",
    "detector_score",
    "first_frame",
    "last_frame",
    "detections",
    "frames",
    "weights",
    *MATCH_FIELDS,
)


def _write_rows(rows: list[dict], output: str | None) -> None:
    """identify's rows: JSON (lists as lists) for a .json output, else CSV (stdout or file)."""
    full = [{column: row.get(column) for column in COLUMNS} for row in rows]
    if output is not None and output.endswith(".json"):
        from keras_faceset.files import atomic_path

        with atomic_path(Path(output)) as tmp:
            Path(tmp).write_text(json.dumps(full, indent=1))
        return
    cells = [
        {k: "" if v is None else json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
        for r in full
    ]
    write_csv(cells, None if output is None else Path(output))


def _draw(folder: Path, faces, tracks, chip_size: int) -> None:
    """Annotated photos (boxes and names) and per-track contact sheets, as PNGs."""
    import cv2

    from keras_faceset.data.folders import read_video_frames
    from keras_faceset.data.images import load_image
    from keras_faceset.files import atomic_path

    folder.mkdir(parents=True, exist_ok=True)

    def save(name: str, rgb: np.ndarray) -> None:
        with atomic_path(folder / name, suffix=".png") as tmp:
            cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[:, :, ::-1]))

    by_photo: dict[str, list] = {}
    for match in faces:
        if match.box is not None and not match.source.startswith("<"):
            by_photo.setdefault(match.source, []).append(match)
    for source, matches in by_photo.items():
        image = np.ascontiguousarray(load_image(source).numpy())
        for match in matches:
            x1, y1, x2, y2 = (int(round(v)) for v in match.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
            label = f"{match.identification.person} {match.identification.score:.2f}"
            cv2.putText(image, label, (x1, max(12, y1 - 4)), 0, 0.5, (0, 255, 0), 1)
        save(f"{Path(source).stem}.png", image)
    for track in tracks:
        images = read_video_frames(track.source, track.best_frames)
        tiles = []
        for frame, image in zip(track.best_frames, images, strict=True):
            x1, y1, x2, y2 = (int(round(v)) for v in track.boxes[track.frames.index(frame)])
            face = image[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)]
            tiles.append(cv2.resize(face, (chip_size, chip_size)))
        sheet = np.ascontiguousarray(np.concatenate(tiles, axis=1))
        name = f"{track.identification.person} {track.identification.score:.2f}"
        cv2.putText(sheet, name, (4, 16), 0, 0.5, (255, 255, 0), 1)
        save(f"{Path(track.source).stem}_track{track.track_id}.png", sheet)


def run_cluster(args: argparse.Namespace) -> int:
    from PIL import Image

    from keras_faceset.data.images import load_image
    from keras_faceset.data.inputs import image_paths
    from keras_faceset.files import atomic_path
    from keras_faceset.gallery.cluster import cluster

    embedder = make_embedder(args)
    paths, images, skipped = [], [], []
    for path in image_paths(args.inputs):
        try:
            images.append(load_image(path).numpy())
            paths.append(str(path))
        except (ValueError, OSError) as error:
            skipped.append((str(path), str(error)))
            print(f"keras-faceset cluster: skipped {path}: {error}", file=sys.stderr)
    if not images:
        raise ValueError("no photo could be read")
    found = embedder.find_faces(images)
    if not len(found):
        raise ValueError("no face found in any photo")
    outputs = embedder.frame_outputs(found.chips)
    templates, _, _ = embedder.set_embeddings(outputs, [[i] for i in range(len(found))])
    labels = cluster(templates, args.threshold, args.method, args.model, args.min_size)
    out = Path(args.output)
    ordinal = np.arange(len(found)) - np.searchsorted(found.image, found.image)
    rows = []
    for face, (image, label) in enumerate(zip(found.image, labels, strict=True)):
        name = f"{Path(paths[image]).stem}_face{ordinal[face]}.png"
        folder = out / ("singletons" if label < 0 else f"cluster_{label:04d}")
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / name, suffix=".png") as tmp:
            Image.fromarray(found.chips[face]).save(tmp, format="PNG")
        box = [round(float(v), 1) for v in found.boxes[face]]
        rows.append(
            {
                "source": paths[image],
                "face": int(ordinal[face]),
                "box": json.dumps(box),
                "cluster": label,
            }
        )
    write_csv(rows, out / "clusters.csv")
    faceless = [paths[i] for i in np.flatnonzero(found.face_count == 0)]
    clusters = len(set(labels[labels >= 0]))
    print(
        f"{len(found)} faces in {len(images)} photos -> {clusters} clusters "
        f"({int((labels < 0).sum())} apart) in {out}; no face in {len(faceless)} photos"
    )
    return 0
