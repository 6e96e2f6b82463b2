"""Training, model evaluation and Hub folders, with a tiny real U-Net on a tiny synthetic set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from apps.cli.main import main
from core.errors import GlowAIError
from core.model.compare import compare
from core.model.data import Example, augment
from core.model.evaluate import _match, eval_acne, eval_segmentation, red_spots
from core.model.train import TrainConfig, confusion, iou_from_confusion, train
from tests.conftest import load_script, make_acne04_like

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
TINY = dict(encoder="tu-mobilenetv3_small_050", decoder_channels=(16, 16, 8, 8, 8), batch=4, patch=64,
            size=128, val_limit=4, lr=1e-3, loss="ce+dice")


@pytest.fixture(scope="module")
def dataset(train_dataset) -> Path:
    return train_dataset


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(data=str(dataset), out=str(out), epochs=1, **TINY), progress=False)
    return out


def test_augment_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    image = np.zeros((128, 128, 3), np.uint8)
    mask = np.zeros((128, 128), np.uint8)
    cv2.circle(image, (64, 64), 10, (255, 0, 0), -1)
    cv2.circle(mask, (64, 64), 10, 1, -1)
    for _ in range(10):
        patch, patch_mask, _ = augment(Example(image, mask, np.zeros((0, 3), np.float32), False, "x"), 64, rng)
        assert patch.shape == (64, 64, 3) and patch_mask.shape == (64, 64)
        assert set(np.unique(patch_mask)) <= {0, 1}
        if patch_mask.any():
            assert patch[patch_mask == 1, 0].mean() > patch[patch_mask == 0, 0].mean() + 100


def test_confusion_and_iou():
    truth = np.array([[0, 1], [2, 2]], np.uint8)
    pred = np.array([[0, 1], [2, 0]], np.uint8)
    iou = iou_from_confusion(confusion(pred, truth))
    assert iou["acne"] == 1.0 and iou["redness"] == 0.5 and np.isnan(iou["texture"])


def test_train_writes_a_run_and_resumes(trained, dataset):
    for name in ("config.json", "metrics.csv", "metrics.png", "best.safetensors", "last.safetensors", "state.pt"):
        assert (trained / name).is_file(), name
    assert len(pd.read_csv(trained / "metrics.csv")) == 1
    config = TrainConfig(data=str(dataset), out=str(trained), epochs=2, **TINY)
    train(config, resume=True, progress=False)
    metrics = pd.read_csv(trained / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2]
    with pytest.raises(GlowAIError, match="already holds a run"):
        train(config, resume=False, progress=False)
    with pytest.raises(GlowAIError, match="other settings"):
        train(TrainConfig(data=str(dataset), out=str(trained), epochs=3, **{**TINY, "lr": 0.5}), resume=True,
              progress=False)


def test_worker_processes_change_the_speed_not_the_patches(dataset, tmp_path):
    import torch

    from core.model.data import load_synth_split
    from core.model.train import PatchSet

    pool = load_synth_split(dataset, "train")
    order = np.arange(len(pool))[::-1].copy()

    def batches(workers: int) -> list:
        patches = PatchSet(pool, order, 64, seed=3, epoch=1, lesion_head=True)
        return list(torch.utils.data.DataLoader(patches, batch_size=4, num_workers=workers))

    alone, parallel = batches(0), batches(2)
    assert len(alone) == len(parallel) > 0
    for one, two in zip(alone, parallel, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(one, two, strict=True))
    other_epoch = list(torch.utils.data.DataLoader(PatchSet(pool, order, 64, 3, 2, True), batch_size=4))
    assert not torch.equal(alone[0][0], other_epoch[0][0])  # each epoch draws new patches
    with pytest.raises(GlowAIError, match="--workers"):
        train(TrainConfig(data=str(dataset), out=str(tmp_path / "bad"), epochs=1, workers=-1, **TINY), progress=False)


def test_init_fine_tunes_from_given_weights(trained, dataset, tmp_path):
    from weights import load_state_dict

    start = load_state_dict(trained / "best.safetensors")[0]
    still = {**TINY, "lr": 1e-12}  # one epoch that barely moves the weights
    train(TrainConfig(data=str(dataset), out=str(tmp_path / "ft"), epochs=1, init=str(trained / "best.safetensors"),
                      **still), progress=False)
    train(TrainConfig(data=str(dataset), out=str(tmp_path / "scratch"), epochs=1, **still), progress=False)
    name = next(k for k in start if k.endswith("weight") and start[k].ndim == 4)
    fine_tuned = load_state_dict(tmp_path / "ft" / "last.safetensors")[0][name]
    scratch = load_state_dict(tmp_path / "scratch" / "last.safetensors")[0][name]
    assert (fine_tuned - start[name]).abs().max() < 1e-6
    assert (scratch - start[name]).abs().max() > 1e-4
    with pytest.raises(GlowAIError, match="do not fit"):
        train(TrainConfig(data=str(dataset), out=str(tmp_path / "bad"), epochs=1, init=str(trained / "best.safetensors"),
                          **{**still, "decoder_channels": (32, 16, 8, 8, 8)}), progress=False)


def test_freeze_bn_keeps_the_running_statistics_of_the_start(trained, dataset, tmp_path):
    from weights import load_state_dict

    start = load_state_dict(trained / "best.safetensors")[0]
    stats = [k for k in start if k.endswith("running_mean") or k.endswith("running_var")]
    conv = next(k for k in start if k.endswith("weight") and start[k].ndim == 4)
    runs = {}
    for frozen in (True, False):
        out = tmp_path / f"frozen-{frozen}"
        train(TrainConfig(data=str(dataset), out=str(out), epochs=1, init=str(trained / "best.safetensors"),
                          freeze_bn=frozen, **TINY), progress=False)
        runs[frozen] = load_state_dict(out / "last.safetensors")[0]
    assert stats and all(torch_equal(runs[True][k], start[k]) for k in stats)
    assert not all(torch_equal(runs[False][k], start[k]) for k in stats)
    assert not torch_equal(runs[True][conv], start[conv])  # the weights still learn


def torch_equal(a, b) -> bool:
    return bool((a.float() - b.float()).abs().max() == 0)


def test_eval_segmentation_reports_every_key(trained, dataset):
    result = eval_segmentation(dataset, str(trained / "best.safetensors"), progress=False)
    assert {"miou", "per_class", "per_tone", "confusion", "per_sample", "thresholds"} <= set(result)
    assert 0.0 <= result["miou"] <= 1.0 and set(result["per_class"]) == {"acne", "redness", "texture", "dryness"}
    assert sum(map(sum, result["confusion"]["rows_truth_columns_prediction"])) == result["count"] * 128 * 128


def test_compare_two_runs_and_push_offline(trained, tmp_path, monkeypatch, capsys):
    table = compare(trained, trained, tmp_path / "cmp.png")
    assert "miou" in table["metric"].tolist() and (tmp_path / "cmp.png").is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["weights", "push", str(trained), "--repo", "glowai/test", "--out", str(tmp_path / "hub")]) == 0
    assert "upload skipped" in capsys.readouterr().out
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "not a medical device" in card and "glowai train --data" in card
    from weights import spec_from_file

    assert spec_from_file(tmp_path / "hub" / "model.safetensors").encoder == TINY["encoder"]


def test_lesion_matching_is_one_to_one():
    circles = [(10.0, 10.0, 5.0), (30.0, 30.0, 5.0)]
    assert _match([(11.0, 10.0), (10.0, 11.0)], circles) == 1  # two predictions, one lesion
    assert _match([(11.0, 10.0), (31.0, 29.0), (90.0, 90.0)], circles) == 2


def test_eval_acne_on_a_tiny_acne04_like_folder(tmp_path, trained):
    """Two 640x640 photos with drawn red spots and their circles; the red-spot baseline finds them."""
    folder = tmp_path / "acne"
    face, annotated = make_acne04_like(folder)
    baseline = eval_acne(folder, "baseline:redspot", progress=False)
    assert {"recall", "precision", "fp_per_image", "count_mae", "spearman", "whole_frame", "per_image"} <= set(baseline)
    assert baseline["recall"] == 1.0 and baseline["annotated"] == 1 and baseline["photos"] == 2
    model = eval_acne(folder, str(trained / "best.safetensors"), progress=False)
    assert model["model"] != "baseline:redspot" and 0.0 <= (model["recall"] or 0.0) <= 1.0
    skin = np.ones(face.shape[:2], bool)
    assert red_spots(annotated, skin).sum() > red_spots(face, skin).sum()


def test_condition_calibration_scores_what_the_segmenter_labels(trained, dataset, tmp_path):
    """scripts/calibrate_conditions.py: thresholds chosen on half the held-out identities; its IoU
    tables are those `eval_segmentation` measures with the same thresholds on the real Segmenter."""
    import json
    import shutil

    script = load_script("calibrate_conditions")

    weights = str(trained / "best.safetensors")
    out = tmp_path / "calibration.json"
    # the tiny set holds two identities, one held out: both stand in for the held-out split here
    dataset = Path(shutil.copytree(dataset, tmp_path / "ds"))
    manifest = pd.read_parquet(dataset / "manifest.parquet").assign(split="val")
    manifest.to_parquet(dataset / "manifest.parquet")
    assert script.main(["--data", str(dataset), "--weights", weights, "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert set(result["thresholds"]) <= {"redness", "texture", "dryness"}
    from core.model.card import write_card  # the card of a run that holds the calibration states it
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    shipped = {**result, "thresholds": {"texture": 0.9, **result["thresholds"]}}
    (run / "calibration-conditions.json").write_text(json.dumps(shipped))
    write_card(run, tmp_path / "card.md")
    assert f'`{json.dumps(shipped["thresholds"])}`' in (tmp_path / "card.md").read_text()
    table = result["table"]
    assert table["calibration"]["samples"] + table["held_out"]["samples"] == table["all"]["samples"]
    assert table["calibration"]["samples"] and table["held_out"]["samples"]
    best = max((row for row in result["tried"]), key=lambda row: row["mean_iou"])
    assert table["calibration"]["thresholds"]["mean_calibrated"] >= best["mean_iou"] - 3 * script.TIE
    assert table["calibration"]["thresholds"]["mean_calibrated"] >= table["calibration"]["argmax"]["mean_calibrated"]
    for thresholds, key in (({}, "argmax"), (result["thresholds"], "thresholds")):
        measured = eval_segmentation(dataset, weights, progress=False, thresholds=thresholds)["per_class"]
        for name in ("redness", "texture", "dryness"):
            assert table["all"][key]["per_class"][name] == pytest.approx(measured[name], abs=1e-4, nan_ok=True)
    from core.segmentation import Segmenter, SegmenterOptions
    with Segmenter(SegmenterOptions(weights=weights, thresholds={})) as segmenter:
        rows = pd.read_parquet(dataset / "manifest.parquet")
        samples = script._sample_outputs(segmenter, dataset, rows.sort_values("id"), False)
        # thresholds inside each class's own range of probabilities, so they move pixels
        forced = {name: float(np.quantile(np.concatenate([s["probs"][index].ravel() for s in samples]), 0.97))
                  for index, name in ((2, "redness"), (3, "texture"), (4, "dryness"))}
        matrix = script._confusion(segmenter, samples, forced)
        assert matrix.tolist() != script._confusion(segmenter, samples, {}).tolist()
    measured = eval_segmentation(dataset, weights, progress=False, thresholds=forced)
    assert matrix.tolist() == measured["confusion"]["rows_truth_columns_prediction"]
