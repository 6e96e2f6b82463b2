"""Procedural synthesis: layouts, rendering with exact masks, QC, datasets (resume, shards, kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.labels import NUM_CLASSES
from synth.dataset import RunConfig, make_plan, merge, prepare_faces, run
from synth.masks import ACNE_COUNT, LayoutOptions, allowed_skin, sample_layout
from synth.procedural import render
from synth.qc import quality

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "data" / "examples"


@pytest.fixture(scope="module")
def faces():
    return prepare_faces(FACES, 256, progress=False)


def test_faces_are_prepared_with_tone_and_light(faces):
    assert set(faces) == {"portrait-001", "portrait-006", "portrait-028", "portrait-057"}
    tones = {f.tone for f in faces.values()}
    assert len(tones) >= 3  # light to dark skin among the examples
    for face in faces.values():
        assert face.image.shape == (256, 256, 3) and face.regions.skin.shape == (256, 256)
        assert abs(np.hypot(*face.light) - 1) < 1e-6


def test_same_seed_same_layout_and_pixels(faces):
    face = faces["portrait-001"]
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(5)
        layout = sample_layout(face, {"acne": 2, "redness": 1}, rng)
        runs.append(render(face, layout, rng))
    assert np.array_equal(runs[0].image, runs[1].image) and np.array_equal(runs[0].mask, runs[1].mask)
    other = render(face, sample_layout(face, {"acne": 2, "redness": 1}, np.random.default_rng(6)),
                   np.random.default_rng(6))
    assert not np.array_equal(other.mask, runs[0].mask)


@pytest.mark.parametrize("condition", ["acne", "redness", "texture", "dryness"])
def test_every_condition_is_exact_visible_and_on_allowed_skin(faces, condition):
    for face in faces.values():
        rng = np.random.default_rng(11)
        layout = sample_layout(face, {condition: 2}, rng)
        result = render(face, layout, rng)
        changed = (result.image != face.image).any(axis=2)
        assert np.array_equal(changed & (result.mask == 0), np.zeros_like(changed))  # nothing outside the mask
        diff = np.abs(result.image.astype(int) - face.image.astype(int)).max(axis=2)
        assert (diff[result.mask > 0] > 3).all()  # the mask is exactly what changed beyond the threshold
        assert set(np.unique(result.mask)) <= {0, {"acne": 1, "redness": 2, "texture": 3, "dryness": 4}[condition]}
        assert not (result.mask > 0)[~face.regions.skin].any()
        qc = quality(face.image, result.image, result.mask, face.regions.skin)
        assert qc.outside_change == 0 and qc.delta_e > 2.5, (face.identity, condition, qc)


def test_lesions_keep_their_margin_from_eyes_and_lips(faces):
    face = faces["portrait-006"]
    options = LayoutOptions()
    allowed = allowed_skin(face, options)
    layout = sample_layout(face, {"acne": 3, "dryness": 3}, np.random.default_rng(2), options)
    for lesion in layout.lesions:
        assert allowed[int(round(lesion.y)), int(round(lesion.x))]
    assert not (layout.fields["dryness"] > 0)[~allowed].any()
    assert not (allowed & (face.regions.parts["eyes"] | face.regions.parts["lips"])).any()


def test_severity_sets_count_and_area(faces):
    face = faces["portrait-001"]
    counts = [len(sample_layout(face, {"acne": s}, np.random.default_rng(3)).lesions) for s in range(4)]
    for level, count in enumerate(counts):
        assert count <= ACNE_COUNT[level][1]
    assert counts[0] < counts[1] < counts[2] < counts[3]
    areas = [(sample_layout(face, {"redness": s}, np.random.default_rng(3)).fields["redness"] > 0.3).sum()
             for s in range(4)]
    assert areas[0] < areas[1] < areas[2] < areas[3]


def test_bad_layout_requests_are_refused(faces):
    with pytest.raises(ValueError, match="unknown condition"):
        sample_layout(faces["portrait-001"], {"wrinkles": 1}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="0-3"):
        sample_layout(faces["portrait-001"], {"acne": 7}, np.random.default_rng(0))


def test_plan_balances_and_splits_by_identity(faces):
    config = RunConfig(backend="procedural", faces=str(FACES), seed=3, size=256)
    plan = make_plan(config, 48, faces)
    identities = {s.identity for s in plan.specs}
    assert set(plan.split.values()) == {"train", "val"}
    assert len({i for i in identities if plan.split[i] == "val"}) >= 1
    primaries = pd.Series([s.primary for s in plan.specs]).value_counts()
    assert set(primaries) == {12}  # 4 conditions x 12
    assert make_plan(config, 48, faces).specs == plan.specs


def _check_dataset(out: Path, n: int) -> pd.DataFrame:
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == n and manifest["id"].is_unique
    train, val = (set(manifest.loc[manifest.split == s, "identity"]) for s in ("train", "val"))
    assert not train & val
    for _, row in manifest.iterrows():
        mask = np.asarray(Image.open(out / row["mask"]))
        image = np.asarray(Image.open(out / row["image"]))
        clean = np.asarray(Image.open(out / row["clean"]))
        assert mask.max() < NUM_CLASSES and mask.dtype == np.uint8
        assert ((image != clean).any(axis=2) <= (mask > 0)).all()
        assert row["qc_outside_change"] == 0 and row["qc_accepted"]
    assert not list(out.glob("*/.*.tmp"))
    return manifest


def test_run_is_resumable_deterministic_and_shards_merge(tmp_path):
    config = RunConfig(backend="procedural", faces=str(FACES), seed=9, size=256)
    whole = tmp_path / "whole"
    run(config, 16, whole, workers=2, progress=False)
    manifest = _check_dataset(whole, 16)
    assert {c for classes in manifest["classes"] for c in classes} == {"acne", "redness", "texture", "dryness"}
    # shards on "two machines", merged
    for index in range(2):
        run(config, 16, tmp_path / f"part{index}", shard=(index, 2), workers=1, progress=False)
    merged = merge(tmp_path / "merged", [tmp_path / "part0", tmp_path / "part1"])
    assert merged["id"].tolist() == manifest["id"].tolist()
    for row in manifest.itertuples():
        for column in ("image", "mask", "clean"):
            assert (whole / getattr(row, column)).read_bytes() == (tmp_path / "merged" / getattr(row, column)).read_bytes()
    # a rerun writes nothing new; a run with other settings is refused
    before = {p: p.stat().st_mtime_ns for p in (whole / "images").iterdir()}
    run(config, 16, whole, workers=1, progress=False)
    assert before == {p: p.stat().st_mtime_ns for p in (whole / "images").iterdir()}
    from core.errors import GlowAIError

    with pytest.raises(GlowAIError, match="other settings"):
        run(RunConfig(backend="procedural", faces=str(FACES), seed=10, size=256), 16, whole, progress=False)


def test_sigkill_halfway_then_rerun_completes_exactly(tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "apps.cli", "synth", "--faces", str(FACES), "--n", "40", "--out", str(out),
               "--seed", "4", "--workers", "1", "--quiet"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "records").glob("*.json"))) < 8:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "records").glob("*.json")))
    assert 8 <= done_before < 40, "the run should have been killed halfway"
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    manifest = _check_dataset(out, 40)
    records = {json.loads(p.read_text())["id"] for p in (out / "records").glob("*.json")}
    assert records == set(manifest["id"]) and len(records) == 40


def test_prepared_faces_file_makes_the_same_dataset_without_the_detector(faces, tmp_path):
    """`glowai synth faces` stores prepared faces so a machine without mediapipe can synthesise:
    lossless, the dataset made from the file is the one made from the folder, pixel for pixel."""
    from synth.faces import load_faces, save_faces

    path = tmp_path / "faces.npz"
    save_faces(faces, path, quality=101)
    loaded = load_faces(path, 256)
    assert set(loaded) == set(faces)
    for identity, face in faces.items():
        again = loaded[identity]
        assert np.array_equal(again.image, face.image) and np.array_equal(again.landmarks, face.landmarks)
        assert np.array_equal(again.regions.skin, face.regions.skin)
        assert np.array_equal(again.regions.zone_map, face.regions.zone_map)
        assert set(again.regions.parts) == set(face.regions.parts)
        assert all(np.array_equal(again.regions.parts[k], v) for k, v in face.regions.parts.items())
        assert (again.ita, again.tone, again.light, again.credit) == (face.ita, face.tone, face.light, face.credit)
    made = {}
    for name, source in (("folder", FACES), ("file", path)):
        run(RunConfig(backend="procedural", faces=str(source), seed=4, size=256), 8, tmp_path / name,
            workers=1, progress=False)
        made[name] = _check_dataset(tmp_path / name, 8)
    assert made["folder"]["id"].tolist() == made["file"]["id"].tolist()
    for _, row in made["folder"].iterrows():
        for column in ("image", "mask"):
            assert np.array_equal(np.asarray(Image.open(tmp_path / "folder" / row[column])),
                                  np.asarray(Image.open(tmp_path / "file" / row[column])))
    lossy = tmp_path / "lossy.npz"
    assert save_faces(faces, lossy, quality=85) < path.stat().st_size
    assert np.abs(load_faces(lossy)["portrait-001"].image.astype(int) - faces["portrait-001"].image).mean() < 3


def test_a_bad_prepared_faces_file_is_refused(faces, tmp_path):
    from core.errors import GlowAIError
    from synth.faces import load_faces, save_faces

    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(GlowAIError, match="not a prepared-faces file"):
        load_faces(broken)
    path = tmp_path / "faces.npz"
    save_faces(faces, path)
    with pytest.raises(GlowAIError, match="this run needs 512x512"):
        load_faces(path, 512)
    with pytest.raises(GlowAIError, match="this run needs 512x512"):
        prepare_faces(path, 512, progress=False)
