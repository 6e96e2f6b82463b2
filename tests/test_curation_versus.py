"""Models side by side (core.curation.versus): tables from eval results, paired failures, markers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.curation.versus import (
    EXPERT,
    MARKERS,
    cached_runs,
    lesion_picture,
    model_order,
    paired_labels,
    section,
    versus_table,
)
from core.model.evaluate import score_acne

CIRCLES = {"levle1_1.jpg": [(100, 100, 10)], "levle3_2.jpg": [(200, 200, 10), (300, 300, 10)]}


def lesions(model: str, points: dict) -> dict:
    photos = {name: {"mode": "face", "tone": tone, "points": points[name]}
              for name, tone in zip(CIRCLES, ("very light", "dark"), strict=True)}
    return {"model": model, **score_acne(photos, CIRCLES), "whole_frame": 0, "per_image": photos}


def test_versus_table_lays_out_grades_and_tones_with_the_better_model():
    v1 = lesions("v1", {"levle1_1.jpg": [(100, 100)], "levle3_2.jpg": []})
    v2 = lesions("v2", {"levle1_1.jpg": [(100, 100), (5, 5)], "levle3_2.jpg": [(200, 200), (300, 300)]})
    table = versus_table([("v1", v1), ("v2", v2)])
    assert list(table.columns) == ["section", "group", "metric", "v1", "v2", "change", "better"]
    assert table["section"].drop_duplicates().tolist() == ["overall", "per grade", "per skin tone"]
    indexed = table.set_index(["section", "group", "metric"])
    assert indexed.loc[("per grade", "levle3", "recall"), ["v1", "v2", "better"]].tolist() == [0.0, 1.0, "v2"]
    assert indexed.loc[("per grade", "levle1", "fp_per_image"), "better"] == "v1"  # lower is better there
    assert indexed.loc[("overall", "", "photos"), "better"] == ""  # a count: neither
    tones = section(table, "per skin tone")["group"].drop_duplicates().tolist()
    assert tones == ["very light", "dark"]  # light to dark, not alphabetical
    assert "group" not in section(table, "overall").columns


def test_equal_names_get_letters_and_three_models_no_change_column():
    result = lesions("v1", {"levle1_1.jpg": [], "levle3_2.jpg": []})
    assert list(versus_table([("v1", result), ("v1", result)]).columns)[3:5] == ["A: v1", "B: v1"]
    table = versus_table([("a", result), ("b", result), ("c", result)])
    assert list(table.columns) == ["section", "group", "metric", "a", "b", "c"]


def test_segmentation_results_become_per_class_iou_rows():
    seg = {"model": "m", "miou": 0.5, "per_class": {"acne": 0.4}, "per_tone": {"dark": 0.3}, "count": 5}
    rows = versus_table([("m", seg), ("n", {**seg, "miou": 0.6})]).set_index(["section", "group", "metric"])
    assert rows.loc[("per class", "acne", "iou"), "m"] == 0.4 and rows.loc[("per skin tone", "dark", "miou"), "n"] == 0.3
    assert rows.loc[("overall", "", "miou"), "better"] == "n"


def test_image_label_results_are_summarised_and_paired():
    truth = {"file": "a.jpg", "tone": "tan", "acne": 1, "redness": 0, "acne_severity": 0, "redness_severity": 0}
    first = {"model": "a", "rows": [{**truth, "acne_pred": 1, "redness_pred": 1}]}
    second = {"model": "b", "rows": [{**truth, "acne_pred": 0, "redness_pred": 0}]}
    table = versus_table([("a", first), ("b", second)]).set_index(["section", "group", "metric"])
    assert table.loc[("overall", "", "wrong_per_photo"), ["a", "b"]].tolist() == [1.0, 1.0]
    assert table.loc[("per class", "acne", "recall"), "better"] == "a"
    assert table.loc[("per skin tone", "tan", "fp_per_image"), "better"] == "b"
    pairs = paired_labels(first, second)
    assert pairs.loc[0, ["wrong_a", "wrong_b", "difference"]].tolist() == [1, 1, 2]


def test_lesion_picture_draws_circles_and_each_model_in_its_marker(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "p.png"), np.full((320, 320, 3), 128, np.uint8))
    picture = lesion_picture(tmp_path / "p.png", {"circles": [[80, 80, 20]], "points": [[160, 160]]},
                             {"points": [[240, 80]]}, size=640)
    assert picture.shape == (640, 640, 3)
    assert tuple(picture[160, 200]) == EXPERT  # the circle's right edge: (80 + 20) * 2 = 200
    assert tuple(picture[320, 320]) == MARKERS[0][0] and tuple(picture[160, 480]) == MARKERS[1][0]


def test_cached_runs_group_by_labelled_set_in_registry_order(tmp_path):
    folder = tmp_path / "error-analysis"
    folder.mkdir()
    for model in ("baseline:redspot", "zeta-model", "glowai-unet-small"):
        (folder / f"{model.replace(':', '-')}__acne.json").write_text(json.dumps({"model": model}))
    (folder / "broken__acne.json").write_text("{not json")
    assert list(cached_runs(tmp_path)["acne"]) == ["glowai-unet-small", "zeta-model", "baseline:redspot"]
    assert model_order(["baseline:redspot", "glowai-unet-small"]) == ["glowai-unet-small", "baseline:redspot"]


@pytest.mark.parametrize("by, order", [("first", ["levle3_2.jpg", "levle1_1.jpg"]),
                                       ("difference", ["levle1_1.jpg", "levle3_2.jpg"])])
def test_paired_photos_sort_by_first_error_or_difference(by, order):
    from core.curation.versus import paired_photos

    v1 = lesions("v1", {"levle1_1.jpg": [(100, 100)], "levle3_2.jpg": [(200, 200)]})  # errors 0, 1
    v2 = lesions("v2", {"levle1_1.jpg": [(9, 9)] * 4, "levle3_2.jpg": []})  # errors 5, 2
    assert paired_photos(v1, v2, by=by)["file"].tolist() == order


def test_grade_confusion_chart_has_category_axes():
    """Grades 0-3 as labels: plotly reads "0".."3" as numbers unless told, and then ticks the
    axis at -0.5, 0, 0.5, ... between the cells."""
    import pandas as pd

    from apps.labeler.charts import confusion_heatmap

    matrix = pd.DataFrame([[3, 1, 0, 0], [0, 2, 1, 0], [0, 0, 4, 1], [0, 0, 0, 2]],
                          index=pd.Index([0, 1, 2, 3], name="grade"), columns=pd.Index([0, 1, 2, 3], name="predicted"))
    figure = confusion_heatmap(matrix, "grades")
    assert figure.layout.xaxis.type == "category" and figure.layout.yaxis.type == "category"
    assert list(figure.data[0].x) == ["0", "1", "2", "3"] and figure.data[0].z.tolist() == matrix.to_numpy().tolist()
