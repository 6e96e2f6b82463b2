"""Error analysis: run a model over a labelled real set, see where and how it fails, tag failures."""

import json
import os
import re
from pathlib import Path

import cv2
import streamlit as st

from apps.labeler.charts import confusion_heatmap
from apps.labeler.common import curator, data_root, store
from core.curation.errors import (
    GRADE_NAMES,
    cell_samples,
    confusion,
    image_level_eval,
    lesion_table,
    per_class_scores,
    per_tone,
)
from core.errors import GlowAIError
from core.files import write_atomic
from core.imageio import load_image
from core.model.evaluate import BASELINE, eval_acne
from weights import is_installed, specs

EVAL_ENV = "GLOWAI_LABELER_EVAL"
FAILURE_MODES = ["missed small lesions", "false spots on texture", "hair or beard", "glasses", "lighting",
                 "side view", "makeup", "scars or marks", "label noise"]

db, root = store(), data_root()
st.title("Error analysis")
folders = [Path(p) for p in os.environ.get(EVAL_ENV, "").split(os.pathsep) if p]
folders = [f for f in folders if f.is_dir()]
if not folders:
    st.info("No labelled real set configured: start the studio with `glowai labeler --data DIR --eval FOLDER` "
            "(an ACNE04-like folder with acne04v2_lesions.json, or images/ plus labels.csv).")
    st.stop()
models = [s.name for s in specs().values() if s.task == "blemish-segmentation" and is_installed(s)] + [BASELINE]
left, right = st.columns(2)
folder = left.selectbox("Labelled set", folders, format_func=lambda p: p.name, key="errors_folder")
model = right.selectbox("Model", models, key="errors_model")
kind = "lesions" if (folder / "acne04v2_lesions.json").is_file() else "image labels"
run_name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}__{folder.name}")
cache = root / "error-analysis" / f"{run_name}.json"


def run_analysis() -> None:
    bar = st.progress(0.0, text="analysing photos...")

    def on_photo(done: int, total: int) -> None:
        bar.progress(done / total, text=f"analysing photo {done + 1} of {total}")

    try:
        if kind == "lesions":
            result = eval_acne(folder, model, progress=False, on_photo=on_photo)
        else:
            table = image_level_eval(folder / "labels.csv", folder / "images", None if model == BASELINE else model,
                                     on_photo=on_photo)
            result = {"model": model, "rows": table.to_dict("records")}
    except GlowAIError as err:
        st.error(str(err))
        st.stop()
    write_atomic(cache, json.dumps(result).encode())
    bar.empty()


label = "Run again" if cache.is_file() else "Run the analysis"
if st.button(f"{label} ({kind}, {model})", type="primary", key="errors_run"):
    run_analysis()
if not cache.is_file():
    st.caption("Results are kept in the dataset folder (error-analysis/) and shown here after the run.")
    st.stop()
result = json.loads(cache.read_text())
st.caption(f"Run `{run_name}` · results in {cache.relative_to(root)}")


def draw(name: str, entry: dict | None) -> object:
    """The photo with expert circles (green) and predicted lesion centres (red)."""
    image = load_image(folder / "images" / name).copy()
    scale = 640 / max(image.shape[:2])
    image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    for x, y, r in (entry or {}).get("circles", []):
        cv2.circle(image, (round(x * scale), round(y * scale)), max(2, round(r * scale)), (40, 220, 60), 2)
    for x, y in (entry or {}).get("points", []):
        cv2.drawMarker(image, (round(x * scale), round(y * scale)), (255, 40, 40), cv2.MARKER_TILTED_CROSS, 10, 2)
    return image


def tag_editor(sample: str, existing: list[str]) -> None:
    chosen = st.multiselect("Failure modes", sorted(set(FAILURE_MODES) | set(existing)), default=existing,
                            key=f"errors_tags_{sample}", accept_new_options=True)
    if sorted(chosen) != sorted(existing) and st.button("Save", key=f"errors_save_{sample}"):
        db.tag_failure(run_name, sample, chosen, curator())
        st.rerun()


saved = db.failure_tags(run_name).groupby("sample_id")["tag"].apply(list).to_dict()
if kind == "lesions":
    table = lesion_table(result)
    cols = st.columns(6)
    for column, (name, key) in zip(cols, [("lesion recall", "recall"), ("precision", "precision"),
                                          ("false positives / photo", "fp_per_image"), ("count error (MAE)", "count_mae"),
                                          ("Spearman(count, grade)", "spearman"), ("no face: whole frame", "whole_frame")],
                                   strict=True):
        column.metric(name, "-" if result.get(key) is None else result[key])
    st.subheader("Per skin tone")
    st.dataframe(per_tone(table), hide_index=True)
    matrix = confusion(table, "grade", "predicted_grade", [0, 1, 2, 3])
    st.plotly_chart(confusion_heatmap(matrix, "ACNE04 grade (rows) against the grade implied by the predicted "
                                              "count (columns; Hayashi bands)"), key="errors_confusion")
    cells = [(r, c) for r in matrix.index for c in matrix.columns if matrix.loc[r, c] > 0]
    cell = st.selectbox("Open a cell", cells, key="errors_cell",
                        format_func=lambda rc: f"grade {rc[0]} ({GRADE_NAMES[rc[0]]}) predicted {rc[1]} "
                                               f"({GRADE_NAMES[rc[1]]}): {matrix.loc[rc[0], rc[1]]} photos")
    behind = cell_samples(table, "grade", "predicted_grade", *cell) if cell else []
    gallery = st.columns(4)
    for position, name in enumerate(behind[:8]):
        gallery[position % 4].image(draw(name, result["per_image"][name]), caption=name)
    st.subheader("Failure gallery (most missed + false lesions first)")
    st.caption("green circles: expert lesions · red crosses: lesions the model found")
    worst = table.dropna(subset=["truth"]).head(int(st.number_input("Photos", 4, 48, 12, step=4, key="errors_n")))
    for row in worst.to_dict("records"):
        picture, info = st.columns([2, 3])
        picture.image(draw(row["file"], result["per_image"][row["file"]]))
        with info:
            st.markdown(f"**{row['file']}** · grade {row['grade']} · expert lesions {int(row['truth'])}, found "
                        f"{int(row['matched'])}, missed {int(row['missed'])}, false {int(row['false_positives'])} · "
                        f"tone {row['tone']} · {row['mode'].replace('_', ' ')}")
            tag_editor(row["file"], saved.get(row["file"], []))
else:
    import pandas as pd

    table = pd.DataFrame(result["rows"])
    st.subheader("Per condition")
    st.dataframe(per_class_scores(table), hide_index=True)
    conditions = [c for c in table.columns if f"{c}_pred" in table.columns]
    shown = st.selectbox("Confusion matrix of", conditions, key="errors_condition")
    matrix = confusion(table, shown, f"{shown}_pred", [0, 1])
    st.plotly_chart(confusion_heatmap(matrix, f"{shown}: present (1) or not (0)"), key="errors_confusion_img")
    cells = [(r, c) for r in matrix.index for c in matrix.columns if matrix.loc[r, c] > 0]
    cell = st.selectbox("Open a cell", cells, key="errors_cell_img",
                        format_func=lambda rc: f"truth {rc[0]}, predicted {rc[1]}: {matrix.loc[rc[0], rc[1]]} photos")
    table["wrong"] = sum((table[c] != table[f"{c}_pred"]).astype(int) for c in conditions)
    st.subheader("Per skin tone: wrong calls per photo")
    st.dataframe(table.groupby("tone")["wrong"].mean().round(2).reset_index(), hide_index=True)
    st.subheader("Failure gallery (most wrong conditions first)")
    behind = cell_samples(table, shown, f"{shown}_pred", *cell) if cell else []
    listed = behind or table.sort_values("wrong", ascending=False)["file"].tolist()
    for name in listed[:12]:
        row = table.loc[table["file"] == name].iloc[0]
        picture, info = st.columns([2, 3])
        picture.image(draw(name, None))
        with info:
            st.markdown(f"**{name}** · " + " · ".join(f"{c}: truth {row[c]}, predicted {row[f'{c}_pred']} "
                                                       f"(severity {row[f'{c}_severity']})" for c in conditions))
            tag_editor(name, saved.get(name, []))
