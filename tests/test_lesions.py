"""The lesion-centre head: targets, augmentation, peak picking, the runtime path and its report."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.labels import NUM_CLASSES, label_by_name
from core.lesions import lesion_peaks
from core.model.data import Example, augment, lesion_heatmap, load_acne04, mask_lesions
from core.model.train import TrainConfig, count_matches, focal_heatmap_loss, train
from core.segmentation import SegmenterOptions
from tests.conftest import LESION_TINY as TINY
from tests.conftest import load_script, make_acne04_like, segmenter_with_heat

ACNE = label_by_name("acne").index
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"


def test_heatmap_peaks_at_every_centre_and_peaks_are_found_back():
    lesions = np.array([[20.0, 30.0, 4.0], [60.5, 40.0, 2.0], [63.0, 43.0, 2.0]], np.float32)
    heat = lesion_heatmap((80, 100), lesions)
    assert heat.max() == pytest.approx(1.0) and heat.min() == 0.0
    for x, y, _ in lesions:
        assert heat[int(round(y)), int(round(x))] == pytest.approx(1.0)
    peaks = lesion_peaks(heat, 0.5)
    assert len(peaks) == 3
    assert count_matches(peaks[:, :2], np.column_stack([lesions[:, :2], np.full(3, 1.5)])) == 3
    assert len(lesion_peaks(heat * 0.4, 0.5)) == 0  # below the threshold: nothing


def test_a_plateau_is_one_peak():
    heat = np.zeros((20, 20), np.float32)
    heat[5:8, 5:9] = 0.9
    peaks = lesion_peaks(heat, 0.5)
    assert len(peaks) == 1 and 5 <= peaks[0, 0] <= 8 and 5 <= peaks[0, 1] <= 7


def test_augment_moves_lesions_with_the_pixels():
    rng = np.random.default_rng(3)
    image = np.full((160, 160, 3), 90, np.uint8)
    centres = [(40, 50), (110, 70), (80, 120)]
    for x, y in centres:
        cv2.circle(image, (x, y), 4, (255, 0, 0), -1)
    lesions = np.array([(x, y, 4.0) for x, y in centres], np.float32)
    example = Example(image, np.full((160, 160), 255, np.uint8), lesions, True, "x")
    seen = 0
    for _ in range(20):
        patch, mask, moved = augment(example, 96, rng)
        assert (mask == 255).all()
        for x, y, radius in moved:
            assert 0 <= x < 96 and 0 <= y < 96 and 3.0 <= radius <= 5.1
            seen += 1
            assert patch[int(round(y)), int(round(x)), 0] > 200  # still on its red spot
    assert seen > 10


def test_mask_lesions_and_focal_loss():
    import torch

    mask = np.zeros((50, 50), np.uint8)
    cv2.circle(mask, (10, 12), 3, ACNE, -1)
    cv2.circle(mask, (35, 30), 5, ACNE, -1)
    found = mask_lesions(mask)
    assert len(found) == 2 and np.allclose(sorted(found[:, 0]), [10, 35], atol=0.5)
    target = torch.from_numpy(lesion_heatmap((50, 50), found))[None]
    good = torch.logit(target.clamp(1e-3, 1 - 1e-3))
    assert focal_heatmap_loss(good, target) < focal_heatmap_loss(torch.zeros_like(good), target)


def test_acne04_loader_keeps_only_photos_with_circles(tmp_path):
    make_acne04_like(tmp_path / "a")
    examples = load_acne04(tmp_path / "a")
    assert [e.name for e in examples] == ["levle2_1.jpg"]
    assert examples[0].real and len(examples[0].lesions) == 3 and (examples[0].mask == 255).all()
    assert np.allclose(examples[0].lesions[0], [300, 420, 8])


def test_training_with_real_lesions_writes_a_lesion_head_checkpoint(lesion_run):
    import pandas as pd

    from weights import load_state_dict, spec_from_file

    run, best, _ = lesion_run
    spec = spec_from_file(run / "best.safetensors")
    assert spec.lesion_head and spec.license == "research-only"
    assert load_state_dict(run / "best.safetensors")[0]["segmentation_head.0.bias"].shape[0] == NUM_CLASSES + 1
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"val_miou", "val_lesion_f1", "val_lesion_recall"} <= set(metrics.columns)
    assert "lesion_f1" in best


def test_real_photos_need_the_head(train_dataset, tmp_path):
    from core.errors import GlowAIError

    with pytest.raises(GlowAIError, match="--lesion-head"):
        train(TrainConfig(data=str(train_dataset), out=str(tmp_path / "x"), real=str(tmp_path), **TINY), progress=False)


def test_segmenter_maps_peaks_to_image_pixels_on_skin_only(lesion_run, isolated_cache):
    run, _, _ = lesion_run
    image = np.full((400, 300, 3), 150, np.uint8)
    skin = np.zeros((400, 300), bool)
    skin[60:340, 50:250] = True
    # the crop is the skin's bounding box + 4 % (+2 px), its long side scaled to input_size 128
    ys, xs = np.nonzero(skin)
    pad = int(0.04 * max(np.ptp(ys), np.ptp(xs))) + 2
    y0, x0 = ys.min() - pad, xs.min() - pad
    scale = 128 / (ys.max() + pad + 1 - y0)
    network = [(20, 30), (70, 50), (45, 100)]
    expected = [(x0 + (cx + 0.5) / scale - 0.5, y0 + (cy + 0.5) / scale - 0.5) for cx, cy in network]
    hx, hy = int(expected[2][0]), int(expected[2][1])
    skin[hy - 15:hy + 15, hx - 15:hx + 15] = False  # a hole in the skin (an eye, say): its peak is dropped
    segmenter = segmenter_with_heat(run / "best.safetensors", network, isolated_cache)
    result = segmenter.segment(image, skin)
    assert result.lesions is not None and result.lesion_heat is not None
    on_skin = expected[:2]
    assert len(result.lesions) == len(on_skin) == 2
    for x, y in on_skin:
        assert np.hypot(result.lesions[:, 0] - x, result.lesions[:, 1] - y).min() < 2.0
    acne = result.label_map == ACNE
    assert acne.any() and not acne[~skin].any()
    count, _ = cv2.connectedComponents(acne.astype(np.uint8))
    assert count - 1 == 2  # one blob per kept lesion


def test_report_counts_lesions_from_the_peaks(lesion_run, isolated_cache):
    from core.pipeline import AnalyzeOptions, Analyzer

    run, _, _ = lesion_run
    analyzer = Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=str(run / "best.safetensors"),
                                                                  runtime="torch-fp32", lesion_threshold=0.5)))
    analyzer._segmenter = segmenter_with_heat(run / "best.safetensors", [(30, 50), (90, 50), (60, 70)],
                                               isolated_cache)
    analysis = analyzer.analyze(EXAMPLES / "portrait-001.jpg")
    peaks = analysis.segmentation.lesions
    assert analysis.report["conditions"]["acne"]["lesions"] == len(peaks) > 0
    assert sum(zone["conditions"]["acne"]["lesions"] for zone in analysis.report["zones"].values()) <= len(peaks)


def test_faint_peaks_are_counted_in_the_report_but_not_marked(lesion_run, isolated_cache):
    from core.pipeline import AnalyzeOptions, Analyzer

    run, _, _ = lesion_run
    analyzer = Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=str(run / "best.safetensors"),
                                                                  runtime="torch-fp32")))
    # three peaks on the cheeks and nose: one clear (0.9), one faint (0.3), one below the count threshold (0.1)
    analyzer._segmenter = segmenter_with_heat(run / "best.safetensors", [(45, 75), (80, 75), (64, 60)],
                                               isolated_cache, heights=[0.9, 0.3, 0.1], count_threshold=0.2)
    analysis = analyzer.analyze(EXAMPLES / "portrait-001.jpg")
    seg = analysis.segmentation
    assert len(seg.lesions) == 1 and seg.lesions[0, 2] >= 0.5
    assert len(seg.faint_lesions) == 1 and 0.2 <= seg.faint_lesions[0, 2] < 0.5
    assert len(seg.counted_lesions) == 2
    assert analysis.report["conditions"]["acne"]["lesions"] == 2
    count, _ = cv2.connectedComponents((seg.label_map == ACNE).astype(np.uint8))
    assert count - 1 == 1  # only the clear one is drawn as acne


def test_count_mae_and_spearman_use_the_models_count_when_it_gives_one():
    from core.model.evaluate import score_acne

    circles = {f"levle{g}_1.jpg": [(10.0 * k, 10.0, 3.0) for k in range(1, 1 + 4 * (g + 1))] for g in range(3)}
    points = {name: [(10.0, 10.0)] for name in circles}  # one marked lesion per photo, all true
    plain = score_acne({n: {"points": p} for n, p in points.items()}, circles, breakdown=False)
    counted = score_acne({n: {"points": p, "count": len(circles[n])} for n, p in points.items()}, circles,
                         breakdown=False)
    assert plain["recall"] == counted["recall"] and plain["fp_per_image"] == counted["fp_per_image"] == 0
    assert plain["count_mae"] == pytest.approx((3 + 7 + 11) / 3) and counted["count_mae"] == 0
    assert plain["spearman"] is None and counted["spearman"] == pytest.approx(1.0)


def test_eval_acne_scores_the_peaks_with_the_same_keys(lesion_run, isolated_cache):
    from core.model.evaluate import eval_acne

    run, _, acne = lesion_run
    result = eval_acne(acne, str(run / "best.safetensors"), progress=False)
    assert {"recall", "precision", "fp_per_image", "count_mae", "spearman", "whole_frame", "per_image",
            "per_grade", "per_tone"} <= set(result)
    assert set(result["per_grade"]) == {"levle0", "levle2"}
    entry = result["per_image"]["levle2_1.jpg"]
    assert entry["truth"] == 3 and entry["matched"] + entry["false_positives"] == entry["predicted"]


def test_eval_compare_runs_two_models_on_one_folder(lesion_run, isolated_cache, tmp_path, capsys):
    import json

    from apps.cli.main import main

    run, _, acne = lesion_run
    out = tmp_path / "eval" / "new" / "cmp.json"  # folders that do not exist yet: made, the figures kept
    assert main(["eval", "compare", "baseline:redspot", str(run / "best.safetensors"), "--data", str(acne),
                 "--json", str(out), "--quiet"]) == 0
    rows = {row["metric"]: row for row in json.loads(out.read_text())}
    assert {"recall", "count_mae", "levle2 recall", "levle0 count_mae"} <= set(rows)
    columns = [c for c in rows["recall"] if c != "metric"]
    assert len(columns) == 2 and columns[0].startswith("A: baseline:redspot")
    assert rows["recall"][columns[0]] == 1.0  # the red-spot baseline finds the three drawn spots
    saved = sorted(p.name for p in out.parent.glob("cmp.*"))
    assert saved == ["cmp.baseline-redspot.json", "cmp.glowai-unet.json", "cmp.json", "cmp.png"]
    assert "levle2 recall" in capsys.readouterr().out


def test_lesion_density_counts_heat_mass_at_the_networks_scale():
    from core.lesions import lesion_density

    heat = np.zeros((60, 80), np.float32)
    heat[10:30, 10:30] = 0.9  # 400 crop pixels of heat 0.8 above the floor
    heat[40:50, 50:70] = 0.05  # below the floor: no lesion
    skin = np.ones((60, 80), bool)
    # the network saw the crop at half size: 100 network pixels x 0.8 = 80 = two lesions of mass 40
    density = lesion_density(heat, skin, floor=0.1, mass=40.0, input_scale=0.5)
    assert density.dtype == np.float32 and float(density.sum()) == pytest.approx(2.0, rel=1e-5)
    assert not density[40:50, 50:70].any()
    skin[10:30, 10:20] = False  # half the blob off skin: half the count
    assert float(lesion_density(heat, skin, 0.1, 40.0, 0.5).sum()) == pytest.approx(1.0, rel=1e-5)
    # the same heat seen at twice the network scale is four times the mass
    assert float(lesion_density(heat, np.ones_like(skin), 0.1, 40.0, 1.0).sum()) == pytest.approx(8.0, rel=1e-5)


def test_report_counts_lesions_from_the_heatmap_mass(lesion_run, isolated_cache):
    import dataclasses

    from core.pipeline import AnalyzeOptions, Analyzer

    run, _, _ = lesion_run
    analyzer = Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=str(run / "best.safetensors"),
                                                                  runtime="torch-fp32")))
    segmenter = segmenter_with_heat(run / "best.safetensors", [(45, 75), (80, 75), (64, 60)], isolated_cache,
                                     heights=[0.9, 0.9, 0.9])
    # the mass of one of those peaks above the floor, in network pixels
    one = 0.9 * lesion_heatmap((40, 40), np.array([(20, 20, 4.0)], np.float32))
    floor = 0.1
    segmenter.spec = dataclasses.replace(segmenter.spec, lesion_count_floor=floor,
                                         lesion_count_mass=float(np.clip(one - floor, 0, None).sum()))
    analyzer._segmenter = segmenter
    analysis = analyzer.analyze(EXAMPLES / "portrait-001.jpg")
    seg = analysis.segmentation
    assert seg.lesion_density is not None and not seg.lesion_density[~analysis.regions.skin].any()
    assert float(seg.lesion_density.sum()) == pytest.approx(3.0, abs=0.3)  # three lesions' worth of heat
    assert seg.lesion_count == analysis.report["conditions"]["acne"]["lesions"] == 3
    zones = [zone["conditions"]["acne"]["lesions"] for zone in analysis.report["zones"].values()]
    assert 2 <= sum(zones) <= 4  # each zone rounds its own share


def test_the_miss_diagnosis_reads_heat_inside_circles_and_finds_near_false_peaks():
    script = load_script("acne_misses")
    heat = np.zeros((40, 40), np.float32)
    heat[10, 10] = 0.9  # inside the first circle
    heat[10, 16] = 0.5  # just outside it (radius 3)
    assert script.circle_max(heat, 10, 10, 3) == pytest.approx(0.9)
    assert script.circle_max(heat, 16, 10, 1) == pytest.approx(0.5)
    assert script.circle_max(heat, 30, 30, 3) == 0.0
    assert script.circle_max(heat, -50, -50, 3) == 0.0  # off the picture
    circles = np.array([[10, 10, 3], [30, 30, 2]], np.float64)
    # one peak matches circle 1; a false one 4 px from circle 2 (2 radii); one far from everything
    peaks = np.array([[20, 20, 0.9], [68, 60, 0.8], [4, 76, 0.7]], np.float32)  # analysed px = 2x photo px
    distances = script.false_peak_distances(peaks, circles, scale=2.0)
    assert distances == pytest.approx([2.0, np.hypot(28, 8) / 2])  # only the unmatched circle counts
    # the second-stage ceiling: every peak from the floor up marked, scored as `glowai eval acne` does
    photos = {"a.jpg": (2.0, peaks), "b.jpg": (1.0, np.array([[5, 5, 0.12], [30, 30, 0.08]], np.float32))}
    truth = {"a.jpg": [(10.0, 10.0, 3.0), (30.0, 30.0, 2.0)], "b.jpg": [(5.0, 5.0, 2.0), (30.0, 30.0, 2.0)]}
    rows = {row["floor"]: row for row in script.ceiling(photos, truth, floors=(0.05, 0.1, 0.75, 0.95))}
    assert rows[0.05]["recall"] == pytest.approx(3 / 4) and rows[0.05]["fp_per_image"] == pytest.approx(1.0)
    assert rows[0.1]["recall"] == pytest.approx(2 / 4) and rows[0.1]["fp_per_image"] == pytest.approx(1.0)
    assert rows[0.75]["recall"] == pytest.approx(1 / 4) and rows[0.75]["fp_per_image"] == pytest.approx(0.5)
    assert rows[0.95]["recall"] == 0.0 and rows[0.95]["peaks_per_photo"] == 0.0


def test_flip_augmentation_lines_the_mirrored_heat_up_with_the_crop(lesion_run, isolated_cache, monkeypatch):
    """scripts/lesion_tta.py: for a network whose heat is a pixelwise function of its input (so a
    mirrored pass gives the mirrored map), the flip-averaged heat equals the single pass at every
    crop pixel, also where the input was padded on the right to a multiple of 32; and a larger input
    size gives the heat at the crop's size."""
    from core.segmentation import Segmenter

    script = load_script("lesion_tta")
    run, _, _ = lesion_run
    segmenter = Segmenter(SegmenterOptions(weights=str(run / "best.safetensors"), runtime="torch-fp32"))
    forward = segmenter._forward

    def pixelwise(x: np.ndarray) -> np.ndarray:
        out = forward(x)
        out[0, NUM_CLASSES] = 3.0 * x[0, 0] - x[0, 2]
        return out

    monkeypatch.setattr(segmenter, "_forward", pixelwise)
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 150, 3), dtype=np.uint8), (5, 5), 0)
    skin = np.zeros((120, 150), bool)
    skin[30:70, 20:75] = True  # a 55 x 40 box: padded to a multiple of 32 on the right and bottom
    once, box = script.crop_heat(segmenter, image, skin, 64, flip=False)
    both, same_box = script.crop_heat(segmenter, image, skin, 64, flip=True)
    assert box == same_box and once.shape == (box[3] - box[1], box[2] - box[0])
    np.testing.assert_allclose(both, once, atol=1e-5)
    assert np.ptp(once) > 0.1  # the map varies, so a misaligned mirror would show
    larger, _ = script.crop_heat(segmenter, image, skin, 96, flip=False)
    assert larger.shape == once.shape


def test_lesion_tta_reports_every_setting_with_its_cost(lesion_run, isolated_cache, tmp_path):
    import json
    import shutil

    script = load_script("lesion_tta")
    run, _, acne = lesion_run
    data = Path(shutil.copytree(acne, tmp_path / "acne"))
    labels = json.loads((data / "acne04v2_lesions.json").read_text())
    shutil.copy(data / "images" / "levle2_1.jpg", data / "images" / "levle2_3.jpg")  # both halves annotated
    labels["images"].append({**labels["images"][0], "id": 7, "file_name": "levle2_3.jpg"})
    labels["annotations"] += [{**a, "id": 70 + k, "image_id": 7} for k, a in enumerate(labels["annotations"][:3])]
    (data / "acne04v2_lesions.json").write_text(json.dumps(labels))
    out = tmp_path / "tta.json"
    assert script.main(["--data", str(data), "--weights", str(run / "best.safetensors"), "--runtime", "torch-fp32",
                        "--sizes", "128,192", "--flip", "--floor", "0.0", "--max-fp", "1000", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["size"], r["flip"], r["cost"]) for r in results] == [(128, False, 1.0), (128, True, 2.0),
                                                                    (192, False, 2.25), (192, True, 4.5)]
    for r in results:  # floor 0 and no FP limit: every peak on the skin is a candidate
        assert 0.0 <= r["heat"]["held_out"]["recall"] <= 1.0 and 0.0 <= r["heat"]["calibration"]["recall"] <= 1.0
        assert r["heat"]["threshold"] == script.THRESHOLDS[0] or r["heat"]["calibration"]["recall"] > 0
        assert r["verified"] is None  # the tiny model has no verifier


def test_the_dev_split_and_the_recall_rule_of_the_calibration_scripts():
    from core.model.evaluate import choose_by_recall, dev_halves

    halves = dev_halves(["c.jpg", "a.jpg", "d.jpg", "b.jpg"])  # sorted first: a c calibrate, b d are held out
    assert halves == {"calibration": {"a.jpg", "c.jpg"}, "held_out": {"b.jpg", "d.jpg"},
                      "all": {"a.jpg", "b.jpg", "c.jpg", "d.jpg"}}
    table = [{"threshold": t, "calibration": {"recall": r, "fp_per_image": fp}}
             for t, r, fp in ((0.3, 0.6, 4.0), (0.4, 0.5, 2.4), (0.5, 0.4, 1.0), (0.6, None, 0.0))]
    assert choose_by_recall(table, 2.5) == (table[1], True)  # the most recall within the budget, not overall
    assert choose_by_recall(table[:1], 2.5) == (table[0], False)  # none within it: the fewest false positives
