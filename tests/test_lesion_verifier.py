"""The lesion verifier: its ONNX graph is the torch network, patches are cut where the points are,
broken checkpoints are refused, the segmenter marks and counts with it, and its training and
calibration scripts run on ACNE04-like photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.errors import WeightsError
from core.labels import NUM_CLASSES, label_by_name
from core.lesion_verifier import (
    PATCH,
    LesionVerifier,
    build_verifier,
    combined_score,
    cut_patches,
    normalise,
    verifier_metadata,
)
from core.model.data import lesion_heatmap
from core.segmentation import Segmenter, SegmenterOptions
from tests.conftest import EXAMPLES, load_script, segmenter_with_heat

ACNE = label_by_name("acne").index


def save_verifier(path, width: int = 4, seed: int = 0, bias: float | None = None, channels: int = 4,
                  contrast: str = "absolute"):
    """A tiny real verifier with random weights and BatchNorm statistics (or, with `bias`, one whose
    output is sigmoid(bias) for every patch). Returns the torch network (eval mode)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = build_verifier(width, channels)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        net[-1].weight.mul_(30)  # a spread of answers, not all near one half
        if bias is not None:
            net[-1].weight.zero_()
            net[-1].bias.fill_(bias)
    net.eval()
    tensors = {k: v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(tensors, str(path), metadata=verifier_metadata(width, channels=channels, contrast=contrast))
    return net


def test_relative_contrast_sees_a_lesion_on_darker_skin_as_on_lighter():
    """A patch at half the brightness (the same skin and lesion, darker) keeps its relative input
    within a few percent; its absolute input halves."""
    rng = np.random.default_rng(3)
    light = rng.uniform(0.5, 0.8, (5, 4, PATCH, PATCH)).astype(np.float32)
    dark = light.copy()
    dark[:, :3] *= 0.5
    for contrast, most in (("relative", 0.06), ("absolute", 0.55)):
        a, b = normalise(light, contrast)[:, :3], normalise(dark, contrast)[:, :3]
        change = np.abs(a - b).sum() / np.abs(a).sum()
        assert change < most and (contrast == "relative" or change > 0.45), (contrast, change)
    with pytest.raises(ValueError, match="contrast"):
        normalise(light, "log")


def test_a_verifier_reads_its_contrast_from_its_checkpoint(tmp_path):
    save_verifier(tmp_path / "rel.safetensors", contrast="relative")
    verifier = LesionVerifier(tmp_path / "rel.safetensors")
    assert verifier.contrast == "relative"
    rng = np.random.default_rng(2)
    image = rng.integers(10, 110, (96, 96, 3), dtype=np.uint8)  # dark skin: relative input twice the absolute
    heat = rng.random((96, 96)).astype(np.float32)
    points = np.array([[30.0, 40.0], [60.0, 50.0], [10.0, 85.0]])
    raw = cut_patches(image, heat, points)
    assert np.allclose(verifier.score(image, heat, points), verifier.probabilities(normalise(raw, "relative")), atol=1e-6)
    assert not np.allclose(verifier.score(image, heat, points), verifier.probabilities(normalise(raw)), atol=1e-3)
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(tmp_path / "rel.safetensors")), str(tmp_path / "odd.safetensors"),
              metadata={**verifier_metadata(4), "contrast": "log"})
    with pytest.raises(WeightsError, match="contrast"):
        LesionVerifier(tmp_path / "odd.safetensors")


@pytest.mark.parametrize("channels", [4, 3])
def test_the_onnx_graph_computes_what_the_torch_network_does(tmp_path, channels):
    net = save_verifier(tmp_path / "v.safetensors", channels=channels)
    rng = np.random.default_rng(1)
    patches = normalise(rng.random((7, 4, PATCH, PATCH)).astype(np.float32))
    patches[:, 3] += np.linspace(0, 3, 7, dtype=np.float32)[:, None, None]  # from no heat to a lot
    patches[:, 0] += np.linspace(-2, 2, 7, dtype=np.float32)[:, None, None]
    with torch.no_grad():  # an RGB-only verifier reads the first three channels of the same patches
        expected = torch.sigmoid(net(torch.from_numpy(patches[:, :channels].copy()))[:, 0]).numpy()
    got = LesionVerifier(tmp_path / "v.safetensors").probabilities(patches)
    assert got.shape == (7,) and np.abs(got - expected).max() < 1e-5
    assert expected.std() > 1e-3  # the patches get different answers: the comparison means something
    assert LesionVerifier(tmp_path / "v.safetensors").probabilities(np.zeros((0, 4, PATCH, PATCH))).shape == (0,)


def test_patches_are_cut_around_the_points_and_a_crops_heatmap_is_read_in_place():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 300, 3), np.uint8)
    heat = rng.random((200, 300)).astype(np.float32)
    full = np.zeros_like(heat)
    full[50:150, 70:260] = heat[50:150, 70:260]
    points = np.array([[75, 55], [100, 100], [255, 149], [5, 5], [299, 199], [150, 40]], np.float32)
    whole = cut_patches(image, full, points)
    assert np.array_equal(whole, cut_patches(image, heat[50:150, 70:260], points, heat_origin=(70, 50)))
    half = PATCH // 2
    assert np.allclose(whole[1, :3, half, half], image[100, 100] / 255)  # the point sits at the centre
    assert whole[1, 3, half, half] == full[100, 100]
    assert np.allclose(whole[3, :3, half - 2, half - 2], image[3, 3] / 255)  # reflected at the border
    wide = cut_patches(image, full, points, margin=4)
    assert wide.shape == (6, 4, PATCH + 8, PATCH + 8) and np.array_equal(wide[:, :, 4:-4, 4:-4], whole)
    x = normalise(whole)
    assert np.allclose(x[:, :3].mean(axis=(2, 3)), 0, atol=1e-4) and np.array_equal(x[:, 3], whole[:, 3])


def test_the_score_is_the_geometric_mean_of_heat_and_probability():
    assert np.allclose(combined_score(np.array([0.25, 1.0, 0.5]), np.array([1.0, 0.16, 0.0])), [0.5, 0.4, 0.0])


def test_broken_or_replaced_checkpoints_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_verifier(tmp_path / "v.safetensors")
    with pytest.raises(WeightsError, match="checksum"):
        LesionVerifier(tmp_path / "v.safetensors", sha256="0" * 64)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="not a verifier"):
        LesionVerifier(tmp_path / "other.safetensors")
    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(WeightsError, match="not a readable"):
        LesionVerifier(tmp_path / "pickle.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        LesionVerifier(tmp_path / "missing.safetensors")


def test_patches_at_the_border_are_the_reflected_photo():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (50, 70, 3), np.uint8)
    points = np.array([[0, 0], [69, 49], [3, 40], [35, 25], [68, 1]], np.float32)
    half = PATCH // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="reflect")
    patches = cut_patches(image, np.zeros((50, 70), np.float32), points)
    for (x, y), patch in zip(points.astype(int), patches, strict=True):
        assert np.allclose(patch[:3], padded[y:y + PATCH, x:x + PATCH].transpose(2, 0, 1) / 255)


def test_a_verifier_marks_by_the_combined_score_and_adds_its_probabilities_to_the_count(lesion_run, isolated_cache,
                                                                                         tmp_path):
    import dataclasses

    from core.pipeline import AnalyzeOptions, Analyzer

    run, _, _ = lesion_run
    save_verifier(tmp_path / "v.safetensors", bias=float(np.log(0.81 / 0.19)))  # p = 0.81 for every patch
    analyzer = Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=str(run / "best.safetensors"),
                                                                  runtime="torch-fp32")))
    segmenter = segmenter_with_heat(run / "best.safetensors", [(45, 75), (80, 75), (64, 60)], isolated_cache,
                                     heights=[0.9, 0.3, 0.15])
    segmenter.spec = dataclasses.replace(segmenter.spec, lesion_count_floor=0.1, lesion_count_mass=50.0)
    segmenter.lesion_threshold = segmenter.lesion_count_threshold = 0.45
    analyzer._segmenter = segmenter
    plain = analyzer.analyze(EXAMPLES / "portrait-001.jpg").segmentation
    assert len(plain.lesions) == 1 and plain.lesion_candidates is None  # only the 0.9 peak reaches 0.45
    segmenter.use_verifier({"file": str(tmp_path / "v.safetensors"), "floor": 0.1, "count_scale": 2.0})
    analysis = analyzer.analyze(EXAMPLES / "portrait-001.jpg")
    seg = analysis.segmentation
    candidates = seg.lesion_candidates
    assert candidates.shape == (3, 4) and np.allclose(candidates[:, 3], 0.81, atol=1e-4)
    # sqrt(0.81 h): the 0.3 peak reaches 0.45 now (0.49), the 0.15 one does not (0.35)
    assert len(seg.lesions) == 2
    assert np.allclose(seg.lesions[:, 2], np.sqrt(0.81 * np.sort(candidates[:, 2])[::-1][:2]), atol=1e-5)
    assert np.hypot(*(seg.lesions[:, :2] - plain.lesions[0, :2]).T).min() < 1.0  # the strong one is still there
    count, _ = cv2.connectedComponents((seg.label_map == ACNE).astype(np.uint8))
    assert count - 1 == 2  # both marked lesions are drawn, the weaker one too
    # every candidate adds count_scale * p**2 to the heat-mass count, on the analysed skin
    assert float(seg.lesion_density.sum() - plain.lesion_density.sum()) == pytest.approx(3 * 2.0 * 0.81**2, rel=1e-3)
    assert not seg.lesion_density[~analysis.regions.skin].any()
    assert analysis.report["conditions"]["acne"]["lesions"] == seg.lesion_count


def test_the_verifier_trains_on_candidates_and_resumes(lesion_run, tmp_path):
    import pandas as pd

    from core.lesion_verifier import LesionVerifier

    run, _, acne = lesion_run
    module = load_script("train_lesion_verifier")
    out = tmp_path / "v"
    common = ["--data", str(acne), "--weights", str(run / "best.safetensors"), "--out", str(out),
              "--width", "4", "--batch", "64", "--val", "0", "--floor", "0.0", "--epochs", "2"]
    assert module.main([*common, "--stop-after", "1"]) == 0  # a run split in two, as across sessions
    data = np.load(out / "candidates.npz")
    assert data["source"].sum() == 3 and data["labels"].sum() >= 3  # the three circle centres are positives
    assert data["patches"].shape[1:] == (4, 40, 40) and len(data["labels"]) > 3
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1]
    half = (out / "verifier.safetensors").read_bytes()
    assert module.main([*common, "--resume"]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    assert list(metrics.columns) == ["epoch", "loss", "val_auc", "heat_auc", "combined_auc", "seconds"]
    assert (out / "verifier.safetensors").read_bytes() != half
    with pytest.raises(SystemExit):  # another plan cannot go on from this state
        module.main([*common[:-1], "3", "--resume"])
    with pytest.raises(SystemExit):  # nor another input normalisation (the run used absolute contrast)
        module.main([*common, "--resume", "--contrast", "relative"])
    assert LesionVerifier(out / "verifier.safetensors").contrast == "absolute"
    probabilities = LesionVerifier(tmp_path / "v" / "verifier.safetensors").probabilities(
        np.zeros((2, 4, 32, 32), np.float32))
    assert probabilities.shape == (2,) and np.all((probabilities > 0) & (probabilities < 1))
    with pytest.raises(SystemExit):
        module.main(["--data", str(tmp_path / "acne04-dev"), "--out", str(tmp_path / "x")])


def test_verifier_calibration_scores_what_the_pipeline_reports(lesion_run, isolated_cache, tmp_path, monkeypatch):
    """scripts/calibrate_lesion_verifier.py chooses the marking threshold and the count on half the
    photos and writes them into the registry; `glowai eval acne` with the written entry measures
    exactly the figures the script reported for all photos."""
    import dataclasses
    import json
    import shutil

    import weights
    from core.model.evaluate import eval_acne

    run, _, acne = lesion_run
    data = Path(shutil.copytree(acne, tmp_path / "acne"))
    labels = json.loads((data / "acne04v2_lesions.json").read_text())
    for annotation in labels["annotations"]:
        annotation["radius"] = 48  # 24 px on the 640 px photos: room for several of the peaks below
    for image_id, name in ((1, "levle1_4.jpg"), (2, "levle2_3.jpg")):  # two more spotted photos: both halves annotated
        shutil.copy(data / "images" / "levle2_1.jpg", data / "images" / name)
        labels["images"].append({**labels["images"][0], "id": image_id, "file_name": name})
        labels["annotations"] += [{**a, "id": 10 * image_id + k, "image_id": image_id}
                                  for k, a in enumerate(labels["annotations"][:3])]
    (data / "acne04v2_lesions.json").write_text(json.dumps(labels))
    save_verifier(tmp_path / "v.safetensors", bias=float(np.log(0.81 / 0.19)))  # p = 0.81: the score follows the heat
    forward = Segmenter._forward

    def with_peaks(self, x: np.ndarray) -> np.ndarray:
        """The tiny model's output with a grid of heatmap peaks of mixed heights (the same every call),
        so that thresholds move marks on and off the expert circles."""
        out = forward(self, x)
        height, width = out.shape[2:]
        centres = [(cx, cy) for cy in range(3, height, 5) for cx in range(3, width, 5)]
        heights = np.random.default_rng(0).uniform(0.1, 1.0, len(centres))
        heat = np.zeros((height, width), np.float32)
        for (cx, cy), peak in zip(centres, heights, strict=True):
            np.maximum(heat, peak * lesion_heatmap((height, width), np.array([(cx, cy, 1.5)], np.float32)), out=heat)
        out[0, NUM_CLASSES] = np.log(np.clip(heat, 1e-4, 1 - 1e-4) / (1 - np.clip(heat, 1e-4, 1 - 1e-4)))
        return out

    monkeypatch.setattr(Segmenter, "_forward", with_peaks)
    entry = {**dataclasses.asdict(weights.spec_from_file(run / "best.safetensors")), "name": "tiny-verified",
             "default": True, "lesion_threshold": 0.5, "lesion_count_floor": 0.03, "lesion_count_mass": 16.0,
             "lesion_verifier": {"file": str(tmp_path / "v.safetensors"), "floor": 0.1, "count_scale": 0.0}}
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(weights, "REGISTRY_FILE", registry)
    weights.specs.cache_clear()
    try:
        script = load_script("calibrate_lesion_verifier")
        out = tmp_path / "calibration.json"
        assert script.main(["--data", str(data), "--weights", "tiny-verified", "--runtime", "torch-fp32", "--max-fp", "60",
                            "--json", str(out), "--registry"]) == 0
        result = json.loads(out.read_text())
        written = json.loads(registry.read_text())["models"][0]
        assert written["lesion_threshold"] == result["lesion_threshold"]
        assert written["lesion_count_mass"] == result["lesion_count_mass"]
        assert written["lesion_verifier"]["count_scale"] == result["count_scale"]
        chosen = result["chosen"]["all"]
        assert chosen["recall"] > 0 and chosen["fp_per_image"] > 0  # marks on circles and off: the choice matters
        assert result["chosen"]["calibration"]["fp_per_image"] <= 60 or not any(
            row["calibration"]["fp_per_image"] <= 60 for row in result["table"])
        weights.specs.cache_clear()
        measured = eval_acne(data, "tiny-verified", progress=False, runtime="torch-fp32")
        assert measured["recall"] == result["chosen"]["all"]["recall"]
        assert measured["fp_per_image"] == result["chosen"]["all"]["fp_per_image"]
        assert measured["count_mae"] == pytest.approx(result["count"]["all"]["count_mae"], abs=0.26)
    finally:
        weights.specs.cache_clear()


def test_the_dihedral_mean_does_not_depend_on_how_the_photo_is_turned(tmp_path):
    """scripts/lesion_tta.py --verifier-tta: the mean over the eight flips and quarter turns of a
    patch is the same for the photo turned a quarter or mirrored, where the plain verifier differs."""
    script = load_script("lesion_tta")
    save_verifier(tmp_path / "v.safetensors", width=4)
    verifier = LesionVerifier(tmp_path / "v.safetensors")
    averaged = script.DihedralMean(verifier)
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    heat = rng.random((64, 64)).astype(np.float32)
    centre = np.array([[32.0, 32.0]], np.float32)  # its patch, pixels 16-47 both ways, turns into itself
    turned, turned_heat = np.ascontiguousarray(np.rot90(image)), np.ascontiguousarray(np.rot90(heat))
    mirrored, mirrored_heat = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(heat[:, ::-1])
    base = averaged.score(image, heat, centre)
    np.testing.assert_allclose(averaged.score(turned, turned_heat, centre), base, atol=1e-5)
    np.testing.assert_allclose(averaged.score(mirrored, mirrored_heat, centre), base, atol=1e-5)
    assert abs(float(verifier.score(turned, turned_heat, centre)[0]) - float(verifier.score(
        image, heat, centre)[0])) > 1e-4  # the plain verifier sees the turned patch differently
