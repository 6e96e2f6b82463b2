"""Labels of real photos: the store (append-only, per curator), agreement, the model's error, and
the export that `glowai eval acne` and `glowai train` read unchanged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.curation.annotate import (
    CANT_TELL,
    agreement,
    check_label,
    cohen_kappa,
    export_labels,
    exported_folders,
    list_photos,
    match_points,
    model_error,
    model_error_summary,
    photo_path,
    point_f1,
)
from core.curation.store import Store
from core.errors import GlowAIError
from core.model.evaluate import BASELINE as BASELINE_NAME
from tests.conftest import EXAMPLES, ROOT

PHOTOS = ("portrait-001.jpg", "portrait-006.jpg", "portrait-028.jpg")


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def sizes_of(folder: Path) -> dict[str, tuple[int, int]]:
    from core.imageio import load_image

    return {name: load_image(folder / name).shape[1::-1] for name in list_photos(folder)}


def test_labels_are_appended_and_the_latest_per_curator_counts(db_url, tmp_path):
    with Store(db_url, tmp_path) as db:
        db.save_photo_label("a.jpg", {"grades": {"acne": 1}, "points": [[10, 20, 5]]}, "alice")
        db.save_photo_label("a.jpg", {"grades": {"acne": 2, "redness": CANT_TELL}, "points": []}, "alice")
        db.save_photo_label("a.jpg", {"grades": {"acne": 0}, "points": [[11, 21, 4]]}, "bob")
        labels = db.photo_labels()
        assert len(labels) == 2
        alice = labels[labels["curator"] == "alice"].iloc[0]
        assert alice["grades"] == {"acne": 2, "redness": CANT_TELL} and alice["points"] == []
        assert db.photo_labels("bob").iloc[0]["points"] == [[11.0, 21.0, 4.0]]
        log = db.audit_log()
        assert (log["action"] == "photo_label").sum() == 3  # nothing overwritten: every save is in the log


@pytest.mark.parametrize("bad", [{"grades": {"acne": 4}}, {"grades": {"spots": 1}}, {"grades": {"acne": True}},
                                 {"points": [[1, 2]]}, {"points": [[-1, 2, 3]]}, {"points": [[1, 2, float("nan")]]},
                                 {"points": [["x", 2, 3]]}, {"points": [[1, 2, 0]]}])
def test_a_malformed_label_is_refused(bad):
    with pytest.raises(GlowAIError):
        check_label(bad)


def test_photo_names_stay_inside_the_folder(photos, tmp_path):
    (tmp_path / "secret.jpg").write_bytes((photos / PHOTOS[0]).read_bytes())
    assert list_photos(photos) == sorted(PHOTOS)
    os.symlink(tmp_path / "secret.jpg", photos / "link.jpg")
    assert list_photos(photos) == sorted(PHOTOS)  # a link out of the folder is not listed...
    for name in ("../secret.jpg", "/etc/passwd", "missing.jpg", "a b.jpg"):
        with pytest.raises(GlowAIError):
            photo_path(photos, name)
    with pytest.raises(GlowAIError, match="not a photo"):  # ...nor opened
        photo_path(photos, "link.jpg")


def test_kappa_and_point_matching():
    assert cohen_kappa([0, 1, 2, 0, 1], [0, 1, 1, 0, 2]) == pytest.approx(0.375)  # (0.6 - 0.36) / 0.64
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert cohen_kappa([1], [1]) is None
    circles = [[10, 10, 5], [40, 40, 5]]
    assert [(i, j) for i, j, _ in match_points([[11, 11], [12, 12], [80, 80]], circles)] == [(0, 0)]
    assert point_f1([[11, 11, 3], [41, 40, 3]], circles) == 1.0
    assert point_f1([[11, 11, 3]], circles) == pytest.approx(2 / 3, abs=1e-4)
    assert point_f1([], []) is None


def test_model_error_counts_kept_moved_deleted_added():
    suggestion = {"model": "m", "points": [[10, 10, 5], [50, 50, 5], [90, 90, 5]], "grades": {"acne": 1, "texture": 0}}
    label = {"points": [[10, 10, 5], [53, 50, 5], [20, 80, 5], [70, 20, 5]], "grades": {"acne": 2, "texture": 0}}
    error = model_error(suggestion, label)
    assert (error["kept"], error["moved"], error["deleted"], error["added"]) == (1, 1, 1, 2)
    assert error["mean_shift_px"] == 1.5 and error["grades_changed"] == {"acne": (1, 2)}
    table = pd.DataFrame([{"curator": "alice", **label, "suggestion": suggestion}])
    row = model_error_summary(table).iloc[0]
    assert row["model precision"] == pytest.approx(2 / 3, abs=1e-3) and row["model recall"] == 0.5 and row["grades kept"] == 0.5


def test_agreement_between_two_curators():
    rows = [("a.jpg", "alice", {"acne": 1, "redness": 0}, [[10, 10, 5]]),
            ("b.jpg", "alice", {"acne": 2, "redness": CANT_TELL}, [[30, 30, 5], [60, 60, 5]]),
            ("c.jpg", "alice", {"acne": 0}, []),
            ("a.jpg", "bob", {"acne": 1, "redness": 1}, [[12, 10, 5]]),
            ("b.jpg", "bob", {"acne": 1, "redness": 1}, [[31, 30, 5]]),
            ("c.jpg", "bob", {"acne": 0}, [])]
    labels = pd.DataFrame([{"photo": p, "curator": c, "grades": g, "points": pts} for p, c, g, pts in rows])
    row = agreement(labels).iloc[0]
    assert row["curators"] == "alice / bob" and row["photos"] == 3
    assert row["kappa acne"] == pytest.approx(cohen_kappa([1, 2, 0], [1, 1, 0]))
    assert row["kappa redness"] is None  # one photo both graded ("can't tell" is left out)
    assert row["point F1"] == pytest.approx(2 * 2 / 5, abs=1e-4)


def test_export_evaluates_with_eval_acne_and_trains(photos, db_url):
    """A curator's labels of CC0 portraits, exported, are an ACNE04-like folder: `glowai eval acne`
    scores a model on it and `load_acne04` (glowai train --real) reads it, circles in place."""
    from core.model.data import acne04_circles, load_acne04
    from core.model.evaluate import BASELINE, eval_acne

    with Store(db_url, photos) as db:
        db.save_photo_label(PHOTOS[0], {"grades": {"acne": 1, "redness": CANT_TELL, "texture": 0},
                                        "points": [[500, 420, 9], [610, 455, 7]]}, "alice")
        db.save_photo_label(PHOTOS[1], {"grades": {"acne": 0, "texture": 2}, "points": []}, "alice")
        db.save_photo_label(PHOTOS[1], {"grades": {"acne": 3}, "points": [[5, 5, 5]]}, "bob")
        target = export_labels(photos, db.photo_labels(), "alice", sizes_of(photos))
    assert target.parent == photos / "glowai-labels" and exported_folders(photos) == [target]
    assert list_photos(target) == sorted(PHOTOS)  # through a link: nothing copied
    assert (target / "images").is_symlink()
    table = pd.read_csv(target / "labels.csv")
    assert table["file"].tolist() == sorted(PHOTOS[:2])
    assert table["acne"].tolist() == [1, 0] and table["redness"].isna().all() and table["texture"].tolist() == [0, 1]
    assert "dryness" not in table.columns  # nobody graded it
    circles = acne04_circles(target)
    np.testing.assert_allclose(circles[PHOTOS[0]], [[500, 420, 9], [610, 455, 7]])
    assert circles[PHOTOS[1]].shape == (0, 3)
    result = eval_acne(target, BASELINE, progress=False)
    assert result["annotated"] == 2 and result["photos"] == 3
    assert result["per_image"][PHOTOS[0]]["circles"] == [[500, 420, 9], [610, 455, 7]]
    examples = {e.name: e for e in load_acne04(target)}
    width, height = sizes_of(photos)[PHOTOS[0]]
    np.testing.assert_allclose(examples[PHOTOS[0]].lesions[0, :2], [500 * 640 / width, 420 * 640 / height], rtol=1e-5)


def test_the_error_analysis_page_runs_on_an_exported_folder(photos, monkeypatch):
    """The studio started with only --photos lists the export as a labelled set, and its analysis runs."""
    streamlit_testing = pytest.importorskip("streamlit.testing.v1")
    from core.curation.store import default_url

    with Store(default_url(photos), photos) as db:
        db.save_photo_label(PHOTOS[0], {"grades": {"acne": 1}, "points": [[500, 420, 9], [610, 455, 7]]}, "alice")
        db.save_photo_label(PHOTOS[1], {"grades": {"acne": 0}, "points": []}, "alice")
        target = export_labels(photos, db.photo_labels(), "alice", sizes_of(photos))
    monkeypatch.delenv("GLOWAI_LABELER_DATA", raising=False)
    monkeypatch.setenv("GLOWAI_LABELER_EVAL", "")
    monkeypatch.setenv("GLOWAI_LABELER_PHOTOS", str(photos))
    monkeypatch.setenv("GLOWAI_LABELER_DB", default_url(photos))
    app = streamlit_testing.AppTest.from_file(str(ROOT / "apps" / "labeler" / "app.py"), default_timeout=180)
    app.run()
    app.switch_page("views/errors.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="errors_folder").value == target
    app.selectbox(key="errors_model").set_value(BASELINE_NAME).run()
    app.button(key="errors_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = {m.label: m.value for m in app.metric}
    assert "lesion recall" in metrics, metrics
    assert (photos / "error-analysis").is_dir()  # results kept beside the photos, nothing written elsewhere


def test_image_level_labels_read_by_error_analysis():
    """labels.csv as the Error analysis page reads it: "can't tell" (blank) is left out of the scores."""
    from core.curation.errors import per_class_scores

    table = pd.DataFrame({"file": ["a", "b", "c"], "redness": [1, None, 0], "redness_pred": [1, 1, 1]})
    scores = per_class_scores(table).set_index("condition")
    assert scores.loc["redness", "photos with it"] == 1 and scores.loc["redness", "precision"] == 0.5


SLOW_EXPORT = """
import sys, time
import core.curation.annotate as annotate
from core.curation.store import Store
real = annotate._write
def slow(path, data):
    real(path, data)
    print("wrote", path.name, flush=True)
    time.sleep(60)
annotate._write = slow
folder = sys.argv[1]
with Store("sqlite:///" + folder + "/curation.db", folder) as db:
    annotate.export_labels(folder, db.photo_labels(), "alice", {n: (10, 10) for n in annotate.list_photos(folder)})
"""


def test_a_killed_export_leaves_nothing_half_written(photos):
    with Store(f"sqlite:///{photos}/curation.db", photos) as db:
        db.save_photo_label(PHOTOS[0], {"grades": {"acne": 1}, "points": [[5, 5, 3]]}, "alice")
    process = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, str(photos)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().startswith("wrote labels.csv")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert exported_folders(photos) == []  # the Error analysis page and eval see no export
    assert [p.name.startswith(".partial-") for p in (photos / "glowai-labels").iterdir()] == [True]
    with Store(f"sqlite:///{photos}/curation.db", photos) as db:
        target = export_labels(photos, db.photo_labels(), "alice", sizes_of(photos))
    assert [p.name for p in (photos / "glowai-labels").iterdir()] == [target.name]  # the partial one is gone
    assert json.loads((target / "acne04v2_lesions.json").read_text())["annotations"][0]["coordinates"] == [5, 5]
