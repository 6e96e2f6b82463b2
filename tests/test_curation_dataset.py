"""Manifest filters, exports (atomic, revisions used), error-analysis tables, the HTML report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from core.curation.dataset import Filters, apply_filters, load_manifest, page, sample_path, with_review
from core.curation.errors import cell_samples, confusion, hayashi_grade, lesion_table, per_class_scores, per_tone
from core.curation.export import export_version, image_data_uri, next_version, stakeholder_report
from core.curation.store import Store, default_url
from core.errors import GlowAIError
from tests.conftest import ROOT


def test_filters_sort_and_pages(tiny_dataset, tmp_path):
    manifest = load_manifest(tiny_dataset)
    assert len(manifest) == 12 and {"qc_flags", "classes", "tone"} <= set(manifest.columns)
    with Store(f"sqlite:///{tmp_path / 'c.db'}", tiny_dataset) as store:
        first, second = manifest["id"].iloc[0], manifest["id"].iloc[1]
        store.decide([first], "accepted", "ana")
        store.add_tags([second], ["check lighting"], "ana")
        table = with_review(manifest, store.statuses(), store.tags())
    assert table.loc[table["id"] == first, "status"].item() == "accepted"
    assert (table["status"] == "unreviewed").sum() == 11
    assert apply_filters(table, Filters(statuses=["accepted"]))["id"].tolist() == [first]
    assert apply_filters(table, Filters(tag="check lighting"))["id"].tolist() == [second]
    acne = apply_filters(table, Filters(classes=["acne"]))
    assert len(acne) and all("acne" in c for c in acne["classes"])
    tone = manifest["tone"].iloc[0]
    assert set(apply_filters(table, Filters(tones=[tone]))["tone"]) == {tone}
    by_area = apply_filters(table, Filters(sort="mask area %", descending=True))["qc_area_pct"].to_numpy()
    assert (np.diff(by_area) <= 0).all()
    assert len(page(table, 0, 5)) == 5 and len(page(table, 2, 5)) == 2 and page(table, 99, 5).equals(page(table, 2, 5))
    with pytest.raises(GlowAIError, match="sort by"):
        apply_filters(table, Filters(sort="nonsense"))


def test_manifest_paths_cannot_leave_the_dataset(tiny_dataset):
    assert sample_path(tiny_dataset, "images/x.png").is_relative_to(tiny_dataset.resolve())
    for hostile in ("../../etc/passwd", "/etc/passwd", "images/../../x.png"):
        with pytest.raises(GlowAIError, match="outside the dataset"):
            sample_path(tiny_dataset, hostile)


def test_a_folder_without_a_manifest_says_what_to_do(tmp_path):
    with pytest.raises(GlowAIError, match="glowai synth"):
        load_manifest(tmp_path)


def test_export_uses_revisions_and_writes_per_class_masks(dataset_copy):
    root = dataset_copy
    manifest = load_manifest(root)
    with Store(default_url(root), root) as store:
        chosen = manifest["id"].iloc[:4].tolist()
        store.decide(chosen, "accepted", "ana")
        original = cv2.imread(str(root / manifest["mask"].iloc[0]), cv2.IMREAD_UNCHANGED)
        revised = np.zeros_like(original)
        revised[10:20, 10:20] = 2
        store.add_revision(chosen[0], cv2.imencode(".png", revised)[1].tobytes(), "test", "ana")
        table = with_review(manifest, store.statuses(), store.tags())
        folder = export_version(root, table[table["status"] == "accepted"], store, note="first cut")
    assert folder == root / "versions" / "v1" and next_version(root) == "v2"
    exported = pd.read_parquet(folder / "manifest.parquet")
    assert exported["id"].tolist() == chosen and "status" not in exported.columns
    assert exported["mask_revision"].tolist() == ["r001", "", "", ""]
    mask = cv2.imread(str(folder / "masks" / f"{chosen[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert (mask == revised).all()
    redness = cv2.imread(str(folder / "masks_per_class" / "redness" / f"{chosen[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(redness)) == {0, 255} and (redness > 0).sum() == 100
    info = json.loads((folder / "version.json").read_text())
    assert info["samples"] == 4 and info["revised_masks"] == 1 and info["note"] == "first cut"
    assert (root / manifest["mask"].iloc[0]).is_file()  # the source dataset is untouched


def test_an_export_killed_midway_leaves_no_version(dataset_copy):
    root = dataset_copy
    slow = """
        import sys, time, pandas as pd
        from pathlib import Path
        from core.curation.dataset import load_manifest
        from core.curation.export import export_version
        from core.curation.store import Store, default_url
        root = Path(sys.argv[1])
        manifest = load_manifest(root)
        big = pd.concat([manifest] * 200, ignore_index=True)  # 2400 rows: long enough to be killed in
        big["id"] = [f"x{i:05d}" for i in range(len(big))]
        print("begin", flush=True)
        export_version(root, big, Store(default_url(root), root))
        """
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(slow), str(root)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "begin"
    deadline = time.monotonic() + 60
    while not list((root / "versions").glob(".partial-*/images/*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the export finished before the kill"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not [p for p in (root / "versions").iterdir() if not p.name.startswith(".partial-")]
    manifest = load_manifest(root)
    with Store(default_url(root), root) as store:  # the next export cleans up and numbers from v1
        table = with_review(manifest, store.statuses(), store.tags())
        folder = export_version(root, table.head(2), store)
    assert folder.name == "v1" and not list((root / "versions").glob(".partial-*"))


def _eval_result() -> dict:
    return {"recall": 0.5, "per_image": {
        "levle0_1.jpg": {"predicted": 1, "grade": 0, "mode": "face", "tone": "light", "points": [[5, 5]],
                         "truth": 1, "matched": 1, "false_positives": 0, "circles": [[5, 5, 3]]},
        "levle2_2.jpg": {"predicted": 3, "grade": 2, "mode": "whole_frame", "tone": "tan", "points": [],
                         "truth": 30, "matched": 2, "false_positives": 1, "circles": []},
        "levle1_3.jpg": {"predicted": 0, "grade": 1, "mode": "face", "tone": "tan", "points": []}}}


def test_lesion_tables_confusion_and_tones():
    table = lesion_table(_eval_result())
    assert table["file"].tolist()[0] == "levle2_2.jpg"  # worst first: 28 missed + 1 false
    assert [hayashi_grade(n) for n in (0, 5, 6, 20, 21, 50, 51)] == [0, 0, 1, 1, 2, 2, 3]
    matrix = confusion(table, "grade", "predicted_grade", [0, 1, 2, 3])
    assert matrix.to_numpy().sum() == 3 and matrix.loc[2, 0] == 1 and matrix.loc[1, 0] == 1
    assert cell_samples(table, "grade", "predicted_grade", 2, 0) == ["levle2_2.jpg"]
    tones = per_tone(table).set_index("tone")
    assert tones.loc["tan", "recall"] == round(2 / 30, 3) and tones.loc["light", "recall"] == 1.0


def test_image_level_scores():
    table = pd.DataFrame({"file": ["a", "b", "c"], "acne": [1, 1, 0], "acne_pred": [1, 0, 1], "acne_severity": [50, 0, 30]})
    scores = per_class_scores(table).set_index("condition")
    assert scores.loc["acne", "precision"] == 0.5 and scores.loc["acne", "recall"] == 0.5


def test_stakeholder_report_is_one_self_contained_page():
    import plotly.express as px

    figure = px.bar(pd.DataFrame({"x": ["a", "b"], "y": [1, 2]}), x="x", y="y")
    picture = image_data_uri(np.full((50, 80, 3), 120, np.uint8), 40)
    page = stakeholder_report("Report <test>", [("Chart", figure), ("Chart again", figure),
                                                ("Table", pd.DataFrame({"a": [1]})), ("Gallery", [(picture, "x<y")]),
                                                ("Text", "plain & simple")])
    assert page.count("<script") >= 2 and "Report &lt;test&gt;" in page and "x&lt;y" in page
    assert "<script src=" not in page and "<link" not in page  # nothing fetched from the network
    assert page.count("plotly.js v") <= 2  # the library is inlined once, not per chart


def test_image_level_eval_on_a_csv(tmp_path, tiny_weights):
    from core.curation.errors import image_level_eval

    images = tmp_path / "images"
    images.mkdir()
    for name in ("portrait-001.jpg", "portrait-057.jpg"):
        (images / name).write_bytes((ROOT / "data" / "examples" / name).read_bytes())
    labels = tmp_path / "labels.csv"
    labels.write_text("file,acne,redness\nportrait-001.jpg,1,0\nportrait-057.jpg,0,0\n")
    seen = []
    table = image_level_eval(labels, images, str(tiny_weights), on_photo=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 2), (1, 2)]
    assert list(table["file"]) == ["portrait-001.jpg", "portrait-057.jpg"]
    assert {"acne", "acne_pred", "acne_severity", "redness_pred", "tone"} <= set(table.columns)
    assert set(per_class_scores(table)["condition"]) == {"acne", "redness"}
    hostile = tmp_path / "hostile.csv"
    hostile.write_text("file,acne\n../labels.csv,1\n")
    with pytest.raises(GlowAIError, match="outside"):
        image_level_eval(hostile, images, str(tiny_weights))


def test_labeler_command_refuses_a_folder_without_a_manifest(tmp_path, capsys):
    from apps.cli.main import main

    assert main(["labeler", "--data", str(tmp_path)]) == 2
    assert "no manifest.parquet" in capsys.readouterr().err


def test_symlinks_cannot_lead_reads_or_writes_out_of_the_dataset(dataset_copy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    (dataset_copy / "images" / "evil.png").symlink_to(outside / "secret.png")
    with pytest.raises(GlowAIError, match="outside the dataset"):
        sample_path(dataset_copy, "images/evil.png")
    (dataset_copy / "revisions").mkdir()
    (dataset_copy / "revisions" / "s1").symlink_to(outside, target_is_directory=True)
    with Store(default_url(dataset_copy), dataset_copy) as store:
        with pytest.raises(GlowAIError, match="outside the dataset"):
            store.add_revision("s1", b"mask", "test", "ana")
        assert store.revisions("s1").empty
        (dataset_copy / "versions").symlink_to(outside, target_is_directory=True)
        table = with_review(load_manifest(dataset_copy), store.statuses(), store.tags())
        with pytest.raises(GlowAIError, match="outside the dataset"):
            export_version(dataset_copy, table.head(1), store)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png"]
