"""Gallery with the real dlib_resnet preset on the example photos: templates are the set head's
embedding of all usable faces, search against brute force, open set, bad input."""

import shutil

import numpy as np
import pytest

from keras_faceset.embedder import FaceEmbedder
from keras_faceset.gallery import UNKNOWN, Gallery, GalleryModelError, threshold_at_fpir
from keras_faceset.gallery import index as index_module
from tests.cli.helpers import POWELL, SERENA_1, SERENA_2, photo, variants, write_video
from tests.gallery.conftest import mean_template, unit

GREY = np.full((250, 250, 3), 128, np.uint8)


@pytest.fixture(scope="module")
def enrolled_photos(tmp_path_factory, dlib):
    """Serena Williams (three media, one face each) and Colin Powell, enrolled once."""
    gallery = Gallery.create(tmp_path_factory.mktemp("gallery") / "people", dlib)
    gallery.add("Serena Williams", variants(SERENA_1))
    gallery.add("Colin Powell", POWELL)
    return gallery.path


@pytest.fixture
def gallery(enrolled_photos, tmp_path, dlib):
    """A copy of the enrolled gallery of its own (tests add and remove people)."""
    return Gallery.open(shutil.copytree(enrolled_photos, tmp_path / "people"), model=dlib)


def test_template_is_the_set_embedding_of_all_faces_and_search_ranks_by_cosine(gallery, dlib):
    want, _ = dlib.embed_sets([variants(SERENA_1), [POWELL]])
    templates = gallery._version.people.vectors["template"]
    np.testing.assert_allclose(templates, want, atol=1e-5)
    listed = gallery.list()
    assert listed["person"].tolist() == ["Serena Williams", "Colin Powell"]
    assert listed["media"].tolist() == [3, 1] and listed["faces"].tolist() == [3, 1]
    (answer,) = gallery.search(SERENA_2, k=5)
    scores = dlib.embed_images([SERENA_2])[0] @ want.T
    assert answer.person == "Serena Williams" and answer.faces == 1 and answer.error is None
    assert [name for name, _ in answer.candidates] == ["Serena Williams", "Colin Powell"]
    np.testing.assert_allclose([s for _, s in answer.candidates], scores, atol=1e-5)
    assert answer.score >= answer.threshold == pytest.approx(1 - dlib.thresholds["1e-02"])
    assert "dlib_resnet's LFW threshold" in answer.threshold_source
    assert "needs >= 10 people" in answer.threshold_source  # says why it is not calibrated
    reopened = Gallery.open(gallery.path)
    assert reopened.version == gallery.version and len(reopened) == 2
    (again,) = reopened.search_vectors(dlib.embed_images([SERENA_2]), k=1)
    assert again.candidates[0][0] == "Serena Williams"
    assert again.score == pytest.approx(answer.score, abs=1e-6)


def test_a_video_is_one_media_of_its_frames_with_a_face(tmp_path, dlib):
    video = tmp_path / "clip.avi"
    frames = [photo(SERENA_1), GREY, photo(SERENA_2), GREY, photo(SERENA_1)[:, ::-1]]
    write_video(video, frames)
    gallery = Gallery.create(tmp_path / "g", dlib)
    report = gallery.add("Serena", video)
    assert (report.enrolled, report.media, report.faces) == (True, 1, 3)
    assert report.frames_without_face == [f"{video}#1", f"{video}#3"]
    media = gallery._version.media.frame
    assert media[["kind", "frames", "faces"]].values.tolist() == [["video", 5, 3]]
    decoded = [frame for i, frame in enumerate(_decode(video)) if i in (0, 2, 4)]
    want, _ = dlib.embed_sets([decoded])
    np.testing.assert_allclose(gallery._version.people.vectors["template"], want, atol=1e-5)


def _decode(video):
    from keras_faceset.data.folders import read_video_frames, video_frame_count

    return list(read_video_frames(video, range(video_frame_count(video))))


def test_duplicate_names_refuse_unless_appended(gallery, dlib):
    with pytest.raises(ValueError, match="already enrolled.*Serena Williams.*append=True"):
        gallery.add("Serena Williams", SERENA_2)
    report = gallery.add("Serena Williams", SERENA_2, append=True)
    assert report.media == 1 and len(gallery) == 2
    row = gallery.list().set_index("person").loc["Serena Williams"]
    assert (row["media"], row["faces"]) == (4, 4)
    want, _ = dlib.embed_sets([[*variants(SERENA_1), SERENA_2]])
    people = gallery._version.people
    serena = people.frame["name"].tolist().index("Serena Williams")
    np.testing.assert_allclose(people.vectors["template"][serena], want[0], atol=1e-5)
    assert sorted(gallery.index.ids) == sorted(people.frame["person_id"])


def test_a_person_with_no_usable_face_is_reported_not_enrolled(gallery):
    before = gallery.version
    report = gallery.add("Nobody", [GREY, GREY[:, :200]])
    assert not report.enrolled and report.faces == 0 and len(report.skipped_media) == 2
    assert "not enrolled" in report.message
    assert gallery.version == before and "Nobody" not in gallery.list()["person"].tolist()
    mixed = gallery.add("Serena again", [GREY, SERENA_2])
    assert mixed.enrolled and mixed.media == 1
    assert mixed.skipped_media == {"<array 0>": "no face found"}


def test_a_query_without_a_face_is_reported(gallery):
    no_face, face = gallery.search([GREY, SERENA_2])
    assert no_face.person is None and no_face.score is None and no_face.faces == 0
    assert no_face.error == "no face found in <array 0>"
    assert face.person == "Serena Williams" and face.error is None


def test_an_empty_gallery_says_so(tmp_path, dlib):
    gallery = Gallery.create(tmp_path / "empty", dlib)
    with pytest.raises(ValueError, match="is empty: enrol people with add"):
        gallery.search(SERENA_2)
    with pytest.raises(FileExistsError, match="already holds a gallery"):
        Gallery.create(tmp_path / "empty", dlib)
    with pytest.raises(FileNotFoundError, match="is not a gallery"):
        Gallery.open(tmp_path / "nothing")


def test_a_gallery_refuses_another_model(gallery):
    with pytest.raises(GalleryModelError, match="made with dlib_resnet.*not dlib_resnet.*central"):
        Gallery.open(gallery.path, model=FaceEmbedder("dlib_resnet", align="center"))
    with pytest.raises(GalleryModelError, match="made with dlib_resnet.*not nan"):
        Gallery.open(gallery.path, model="nan")


def test_remove(gallery):
    gallery.remove("Colin Powell")
    assert gallery.list()["person"].tolist() == ["Serena Williams"] and len(gallery.index) == 1
    (answer,) = gallery.search(POWELL)
    assert [name for name, _ in answer.candidates] == ["Serena Williams"]
    with pytest.raises(KeyError, match="not enrolled.*Colin Powell"):
        gallery.remove("Colin Powell")
    faces = gallery._store.table(gallery.version, "embeddings")
    assert len(faces) == 3 and set(faces.frame["person_id"]) == {0}


def test_media_templates_score_a_person_by_their_best_media(enrolled):
    gallery, people = enrolled(templates="media")
    assert len(gallery.index) == 120
    query = people["person007"][2][:1]  # one frame of one of person007's media
    (answer,) = gallery.search_vectors(query, k=3)
    best = {
        name: max(float(unit(query[0]) @ mean_template([m])) for m in media)
        for name, media in people.items()
    }
    want = sorted(best.items(), key=lambda item: -item[1])[:3]
    assert [n for n, _ in answer.candidates] == [n for n, _ in want]
    np.testing.assert_allclose([s for _, s in answer.candidates], [s for _, s in want], atol=1e-5)


def leave_one_out_best(people):
    """Brute force: each media against the templates of every other person, best score."""
    templates = {name: mean_template(media) for name, media in people.items()}
    return np.array(
        [
            max(mean_template([m]) @ t for other, t in templates.items() if other != name)
            for name, media in people.items()
            for m in media
        ]
    )


def test_calibrate_sets_the_threshold_at_fpir_from_left_out_people(enrolled):
    gallery, people = enrolled()
    best = leave_one_out_best(people)
    np.testing.assert_allclose(np.sort(gallery.impostor_scores()), np.sort(best), atol=1e-5)
    result = gallery.calibrate(fpir=1e-2)
    assert (result["probes"], result["people"]) == (120, 30)
    assert (best >= result["threshold"] - 1e-6).sum() == 1  # floor(0.01 * 120) probes pass
    reopened = Gallery.open(gallery.path)
    (answer,) = reopened.search_vectors(people["person003"][0][:1], k=2)
    assert answer.threshold == result["threshold"]
    assert answer.threshold_source.startswith("calibrated at FPIR 1e-02 on 120 probes of 30")
    assert answer.person == "person003"  # genuine views score far above the impostors
    assert gallery.search_vectors(unit(np.ones((1, 128))))[0].person == UNKNOWN
    with pytest.raises(ValueError, match="needs >= 10 people and >= 1000 media; it has 30"):
        gallery.calibrate(fpir=1e-3)


def test_a_small_gallery_falls_back_to_the_preset_threshold(enrolled):
    gallery, people = enrolled(count=6)
    with pytest.raises(ValueError, match="too small.*>= 10 people.*it has 6 people"):
        gallery.calibrate()
    (answer,) = gallery.search_vectors(people["person001"][0][:1])
    assert "LFW threshold at FAR 1e-02, not calibrated" in answer.threshold_source
    with pytest.raises(ValueError, match="no threshold at FPIR 1e-04.*calibrate"):
        gallery.search_vectors(people["person001"][0], fpir=1e-4)


def test_threshold_at_fpir_with_ties():
    best = np.array([0.9, 0.8, 0.8, 0.7] + [0.1] * 96)
    assert threshold_at_fpir(best, 0.01) == 0.9  # 1 of 100 may pass
    tied = threshold_at_fpir(best, 0.02)  # 2 may pass, but 0.8 lets 3 through: step above it
    assert 0.8 < tied < 0.80001 and (best >= tied).sum() == 1
    with pytest.raises(ValueError, match="100 probes cannot measure FPIR 0.001"):
        threshold_at_fpir(best, 1e-3)


def test_hnsw_gallery_answers_as_the_exact_one_and_auto_switches(enrolled, monkeypatch):
    exact, people = enrolled(index="exact")
    hnsw, _ = enrolled(index="hnsw")
    queries = np.concatenate([media[1] for media in people.values()])
    for a, b in zip(exact.search_vectors(queries), hnsw.search_vectors(queries), strict=True):
        assert a.candidates[0][0] == b.candidates[0][0]
    monkeypatch.setattr(index_module, "AUTO_EXACT_MAX", 31)
    auto, _ = enrolled(count=31)
    assert auto.index.kind == "exact"
    auto.add_frames({"one more": [people["person000"][0]]})
    assert auto.index.kind == "hnsw" and len(auto.index) == 32
    auto.remove(["one more", "person001"])
    assert auto.index.kind == "exact" and sorted(auto.index.ids) == sorted(
        auto._version.people.frame["person_id"]
    )


def test_a_set_preset_keeps_frame_features_and_rebuilds_its_template_on_append(tmp_path):
    nan = FaceEmbedder("nan")
    gallery = Gallery.create(tmp_path / "nan", nan)
    gallery.add("Serena Williams", variants(SERENA_1)[:2])
    gallery.add("Colin Powell", POWELL)
    gallery.add("Serena Williams", SERENA_2, append=True)
    faces = gallery._store.table(gallery.version, "embeddings")
    assert faces.vectors["frame_features"].shape == (4, 448)
    want, _ = nan.embed_sets([[*variants(SERENA_1)[:2], SERENA_2], [POWELL]])
    people = gallery._version.people
    order = [people.frame["name"].tolist().index(n) for n in ("Serena Williams", "Colin Powell")]
    np.testing.assert_allclose(people.vectors["template"][order], want, atol=1e-5)
    (answer,) = Gallery.open(gallery.path, model=nan).search(variants(SERENA_1)[2])
    assert answer.candidates[0][0] == "Serena Williams"
    assert "nan's LFW threshold" in answer.threshold_source
