"""The segmentation predictor with a tiny real smp U-Net: shapes, skin restriction, runtimes agree."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.errors import WeightsError
from core.labels import NUM_CLASSES
from core.netops import argmax_channels
from core.segmentation import Segmenter, SegmenterOptions, apply_thresholds, cpu_has_bf16


@pytest.fixture(scope="module")
def skin_mask(portrait):
    mask = np.zeros(portrait.shape[:2], bool)
    mask[300:560, 280:520] = True
    return mask


def test_probabilities_and_label_map_restricted_to_skin(tiny_weights, portrait, skin_mask, isolated_cache):
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="torch-fp32")) as segmenter:
        result = segmenter.segment(portrait, skin_mask)
    assert result.probabilities.shape == (NUM_CLASSES, *portrait.shape[:2])
    assert result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-4)
    assert result.label_map.dtype == np.uint8 and result.label_map.shape == portrait.shape[:2]
    assert not result.label_map[~skin_mask].any()
    inside = result.probabilities[:, skin_mask].argmax(axis=0)
    assert np.array_equal(result.label_map[skin_mask], inside)
    assert result.model == "tiny-test-unet" and result.runtime == "torch-fp32"


def test_decision_threshold_labels_a_class_exactly_where_its_probability_reaches_it(tiny_weights, portrait,
                                                                                    skin_mask):
    options = {"weights": str(tiny_weights), "runtime": "torch-fp32"}
    with Segmenter(SegmenterOptions(**options)) as plain:
        base = plain.segment(portrait, skin_mask)
    acne = base.probabilities[1]
    for quantile in (0.9, 0.999):  # below and above the argmax's own acne pixels
        threshold = float(np.quantile(acne[skin_mask], quantile))
        with Segmenter(SegmenterOptions(**options, thresholds={"acne": threshold})) as calibrated:
            result = calibrated.segment(portrait, skin_mask)
        assert np.array_equal(result.label_map == 1, skin_mask & (acne >= threshold))
        others = np.where(base.label_map != 1, base.label_map, 0)
        kept = skin_mask & (base.label_map != 1) & (acne < threshold)
        assert np.array_equal(result.label_map[kept], others[kept])  # other classes stay where they were
        dropped = skin_mask & (base.label_map == 1) & (acne < threshold)
        assert not (result.label_map[dropped] == 1).any()
    with pytest.raises(ValueError, match="unknown classes"):
        Segmenter(SegmenterOptions(**options, thresholds={"freckles": 0.2}))


def test_thresholds_send_a_pixel_to_the_likeliest_class_that_reaches_its_own():
    probs = np.array([[0.20, 0.02, 0.30, 0.10, 0.70],   # background (no threshold)
                      [0.00, 0.00, 0.00, 0.30, 0.10],   # acne
                      [0.30, 0.03, 0.25, 0.35, 0.10],   # redness
                      [0.50, 0.95, 0.05, 0.05, 0.05],   # texture
                      [0.00, 0.00, 0.40, 0.20, 0.05]], np.float32)[:, None, :]  # dryness; columns a-e
    plain = argmax_channels(probs)
    assert plain.ravel().tolist() == [3, 3, 4, 2, 0]
    assert apply_thresholds(probs, plain.copy(), []).ravel().tolist() == [3, 3, 4, 2, 0]
    # (a) texture below its 0.9, redness below its 0.35, acne below its 0.2: background; (b) texture
    # clears 0.9; (d) redness and acne both reach theirs: the likelier, redness
    demoted = [(1, 0.2), (2, 0.35), (3, 0.9)]
    assert apply_thresholds(probs, plain.copy(), demoted).ravel().tolist() == [0, 3, 4, 2, 0]
    # (a) redness reaches 0.3 although texture is likelier: redness
    assert apply_thresholds(probs, plain.copy(), [(1, 0.2), (2, 0.3)]).ravel().tolist() == [2, 3, 4, 2, 0]
    # (c) dryness below 0.5 falls back to background, not to acne (below its own); (d) acne promoted
    assert apply_thresholds(probs, plain.copy(), [(1, 0.2), (4, 0.5)]).ravel().tolist() == [3, 3, 0, 1, 0]
    with pytest.raises(ValueError, match="C-contiguous"):  # a copy made by reshape would be changed instead
        apply_thresholds(np.zeros((5, 3, 2), np.float32), np.zeros((2, 3), np.uint8).T, [(3, 0.9)])


def test_condition_thresholds_on_a_real_model_keep_every_class_above_its_own(tiny_weights, portrait, skin_mask):
    options = {"weights": str(tiny_weights), "runtime": "torch-fp32"}
    with Segmenter(SegmenterOptions(**options)) as plain:
        base = plain.segment(portrait, skin_mask)
    probs = base.probabilities
    thresholds = {name: float(np.quantile(probs[index][skin_mask], 0.95))
                  for index, name in ((2, "redness"), (3, "texture"), (4, "dryness"))}
    thresholds = {k: max(v, 0.5) for k, v in thresholds.items()}  # above a half: a demotion only
    with Segmenter(SegmenterOptions(**options, thresholds=thresholds)) as calibrated:
        result = calibrated.segment(portrait, skin_mask)
    for index, name in ((2, "redness"), (3, "texture"), (4, "dryness")):
        labelled = result.label_map == index
        assert np.array_equal(labelled, skin_mask & (base.label_map == index) & (probs[index] >= thresholds[name]))
    moved = skin_mask & (result.label_map != base.label_map)
    assert (np.isin(base.label_map[moved], [2, 3, 4])).all()  # only thresholded classes ever give pixels away


def test_same_input_same_output(tiny_weights, portrait, skin_mask):
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="torch-fp32")) as segmenter:
        first = segmenter.segment(portrait, skin_mask).probabilities
        second = segmenter.segment(portrait, skin_mask).probabilities
    assert np.array_equal(first, second)


@pytest.mark.parametrize("runtime", ["torch-bf16", "onnx"])
def test_fast_cpu_runtimes_agree_with_fp32(runtime, tiny_weights, portrait, skin_mask, isolated_cache):
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="torch-fp32")) as reference:
        expected = reference.segment(portrait, skin_mask).probabilities
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime=runtime)) as segmenter:
        got = segmenter.segment(portrait, skin_mask).probabilities
    tolerance = 0.05 if runtime == "torch-bf16" else 1e-3
    assert np.abs(got - expected)[:, skin_mask].mean() < tolerance / 5
    assert np.abs(got - expected).max() < tolerance * 4


def test_int8_runtime_is_quantized_once_and_stays_close_to_fp32(tiny_weights, portrait, skin_mask, isolated_cache):
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="torch-fp32")) as reference:
        expected = reference.segment(portrait, skin_mask)
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="onnx-int8")) as segmenter:
        got = segmenter.segment(portrait, skin_mask)
    cached = sorted(p.name for p in (isolated_cache / "weights" / "onnx").iterdir())
    assert len(cached) == 2 and cached[0].endswith("-int8.onnx")  # the fp32 export and its int8 model, no leftovers
    int8 = (isolated_cache / "weights" / "onnx" / cached[0]).stat().st_size
    assert int8 < 0.5 * (isolated_cache / "weights" / "onnx" / cached[1]).stat().st_size  # int8 weights, not fp32
    assert got.runtime == "onnx-int8"
    assert np.abs(got.probabilities - expected.probabilities)[:, skin_mask].mean() < 0.02
    assert (got.label_map[skin_mask] == expected.label_map[skin_mask]).mean() > 0.9


def test_a_killed_export_s_work_folder_is_cleared_by_the_next(tiny_weights, isolated_cache):
    import os
    import time

    folder = isolated_cache / "weights" / "onnx"
    stale, live = folder / ".export-killed", folder / ".quantize-running"
    for work in (stale, live):
        (work).mkdir(parents=True)
        (work / "model.onnx").write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="onnx")) as segmenter:
        assert segmenter.runtime == "onnx"
    assert not stale.exists() and live.is_dir()  # an hour old: killed; younger: maybe another process's


def test_auto_takes_the_model_s_checked_cpu_runtime(tiny_weights, tmp_path, isolated_cache):
    from weights import load_state_dict, save_checkpoint, spec_from_file

    tensors, _ = load_state_dict(tiny_weights)
    spec = spec_from_file(tiny_weights)
    for cpu_runtime, expected in (("onnx", "onnx"), (None, None)):
        path = tmp_path / f"tiny-{cpu_runtime}.safetensors"
        save_checkpoint(tensors, path, dataclasses.replace(spec, cpu_runtime=cpu_runtime))
        with Segmenter(SegmenterOptions(weights=str(path))) as segmenter:
            assert segmenter.runtime == (expected or ("torch-bf16" if cpu_has_bf16() else "onnx"))
    path = tmp_path / "tiny-bad.safetensors"
    save_checkpoint(tensors, path, dataclasses.replace(spec, cpu_runtime="torch-fp16"))
    with pytest.raises(WeightsError, match="not a CPU runtime"):
        Segmenter(SegmenterOptions(weights=str(path)))


def test_empty_skin_gives_background_everywhere(tiny_weights, portrait):
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="torch-fp32")) as segmenter:
        result = segmenter.segment(portrait, np.zeros(portrait.shape[:2], bool))
    assert not result.label_map.any() and (result.probabilities[0] == 1).all()


def test_missing_default_model_and_wrong_weights_are_clear(tmp_path, monkeypatch):
    import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path / "empty")
    with pytest.raises(WeightsError, match="not installed"):
        Segmenter(SegmenterOptions())
    with pytest.raises(WeightsError, match="no such weights file"):
        Segmenter(SegmenterOptions(weights=str(tmp_path / "none.safetensors")))


@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fp16_agrees_with_cpu_fp32(tiny_weights, portrait, skin_mask):
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), runtime="torch-fp32")) as reference:
        expected = reference.segment(portrait, skin_mask).probabilities
    with Segmenter(SegmenterOptions(weights=str(tiny_weights), device="cuda", runtime="auto")) as segmenter:
        assert segmenter.runtime == "torch-fp16"
        got = segmenter.segment(portrait, skin_mask).probabilities
    assert np.abs(got - expected)[:, skin_mask].mean() < 0.01


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "cropped"])
def test_softmax_sigmoid_and_argmax_match_numpy_on_every_memory_layout(layout):
    from core.netops import argmax_channels, sigmoid, softmax

    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((6, 40, 56)) * 6).astype(np.float32)
    logits[2, :5] = logits[1, :5]  # ties: the first class wins, as in numpy
    if layout == "channels_last":  # what a channels_last torch output looks like through .numpy()
        logits = np.ascontiguousarray(logits.transpose(1, 2, 0)).transpose(2, 0, 1)
    elif layout == "cropped":  # the unpadded part of a network output
        logits = np.pad(logits, ((0, 0), (0, 3), (0, 9)))[:, :40, :56]
    exp = np.exp(logits[:5].astype(np.float64) - logits[:5].max(axis=0))
    np.testing.assert_allclose(softmax(logits[:5]), exp / exp.sum(axis=0), atol=1e-6)
    np.testing.assert_allclose(sigmoid(logits[5]), 1 / (1 + np.exp(-logits[5].astype(np.float64))), atol=1e-6)
    probs = softmax(logits[:5])
    assert np.array_equal(argmax_channels(probs), probs.argmax(axis=0))
    assert np.array_equal(argmax_channels(logits[:5]), logits[:5].argmax(axis=0))
