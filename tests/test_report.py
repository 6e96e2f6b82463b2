"""Skin report, guidance and the JSON schema, on real analyses of a portrait."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from core.guidance import guidance, rule_table
from core.labels import CONDITIONS
from core.pipeline import AnalyzeOptions, Analyzer
from core.regions import ZONES
from core.report import condition_scores, severity
from core.segmentation import SegmenterOptions

SCHEMA = json.loads((Path(__file__).parents[1] / "core" / "data" / "report.schema.json").read_text())
GOLDEN = Path(__file__).parent / "golden" / "report_shape.json"


def _shape(value):
    """The structure of a JSON value: keys and types, not numbers."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value and isinstance(value[0], (dict, list)) else "list"
    return type(value).__name__


@pytest.fixture(scope="module")
def analysis_with_model(tiny_weights, portrait_path):
    with Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=str(tiny_weights), runtime="torch-fp32"))) as a:
        yield a.analyze(portrait_path)


@pytest.fixture()
def analysis_without_model(portrait_path, tmp_path, monkeypatch):
    import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)  # as on a machine where the default is missing
    assert not weights.is_installed(weights.default_spec())
    with Analyzer() as analyzer:
        yield analyzer.analyze(portrait_path)


def test_severity_formula_is_monotonic_and_bounded():
    assert severity("acne", 0.0, 0) == 0
    assert severity("acne", 4.0, 0) == 63  # A_c: 63 from area alone
    assert severity("acne", 1.0, 5) > severity("acne", 1.0, 1) > severity("acne", 1.0, 0)
    assert severity("redness", 100.0, 0) == 100
    assert severity("redness", 5.0, 50) == severity("redness", 5.0, 0)  # diffuse: count ignored


def test_condition_scores_count_lesions_and_area():
    label_map = np.zeros((100, 100), np.uint8)
    label_map[10:14, 10:14] = 1
    label_map[50:54, 60:64] = 1
    label_map[80:90, 0:100] = 2
    scores = condition_scores(label_map, np.ones((100, 100), bool), min_lesion_px=3)
    assert scores["acne"]["lesions"] == 2 and scores["acne"]["area_pct"] == 0.32
    assert scores["redness"]["area_pct"] == 10.0 and scores["texture"]["severity"] == 0


def test_report_with_a_model_matches_schema_and_golden_shape(analysis_with_model):
    report = analysis_with_model.to_json()
    jsonschema.validate(report, SCHEMA)
    assert set(report["zones"]) == set(ZONES)
    assert report["segmentation"] == {"status": "ok", "model": "tiny-test-unet", "message": None}
    for zone in report["zones"].values():
        assert set(zone["conditions"]) == {label.name for label in CONDITIONS}
    assert {"decode", "detect", "landmarks", "regions", "segment", "report", "total"} <= set(report["timings_ms"])
    assert report["backends"]["segment"] == "tiny-test-unet (torch-fp32)"
    if os.environ.get("GLOWAI_UPDATE_GOLDEN"):  # after a deliberate schema change
        GOLDEN.write_text(json.dumps(_shape(report), indent=1) + "\n")
    assert _shape(report) == json.loads(GOLDEN.read_text()), "report shape changed: bump REPORT_VERSION and the golden"


def test_report_without_a_model_says_so_plainly(analysis_without_model):
    report = analysis_without_model.to_json()
    jsonschema.validate(report, SCHEMA)
    assert report["segmentation"]["status"] == "not_installed"
    assert report["conditions"] is None
    assert any("No blemish model is installed" in line for line in report["guidance"])
    assert report["backends"]["segment"] == "none installed"


def test_guidance_rules_are_valid_data_and_never_diagnose():
    table = rule_table()
    conditions = {label.name for label in CONDITIONS}
    words = re.compile(r"rosacea|eczema|psoriasis|dermatitis|melanoma|cancer|infection|you have", re.I)
    texts = [table["clear"], table["no_model"], table["see_a_professional"]]
    for rule in table["rules"]:
        assert rule["condition"] in conditions and rule.get("zone", "forehead") in ZONES
        assert 0 <= rule["min"] < rule["max"] <= 101
        texts.append(rule["text"])
    for text in texts:
        assert not words.search(text), text
    assert "not a medical device" in table["disclaimer"] and "no diagnosis" in table["disclaimer"]


def test_guidance_follows_severity():
    zero = {c.name: {"severity": 0} for c in CONDITIONS}
    assert guidance(zero, {}, []) == [rule_table()["clear"]]
    high = dict(zero, acne={"severity": 80})
    lines = guidance(high, {"chin": {"conditions": {"acne": {"severity": 80}}}}, ["Too dark."])
    assert lines[0] == "Too dark."
    assert any("benzoyl" in line for line in lines) and any("chin" in line for line in lines)
    assert lines[-1] == rule_table()["see_a_professional"]
