"""Error analysis: run a model (or two, v1 against v2) over a labelled real set, see where and how
it fails, tag failures."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from apps.labeler.charts import confusion_heatmap
from apps.labeler.common import curator, photo_folder, read_json, store, workspace_root
from core.curation.annotate import exported_folders
from core.curation.errors import (
    GRADE_NAMES,
    cell_samples,
    confusion,
    image_level_eval,
    lesion_table,
    per_class_scores,
    per_tone,
)
from core.curation.versus import (
    MARKERS,
    cached_runs,
    legend,
    lesion_picture,
    paired_labels,
    paired_photos,
    run_name,
    safe_name,
    section,
    versus_table,
)
from core.errors import GlowAIError
from core.files import write_atomic
from core.model.evaluate import BASELINE, eval_acne
from weights import is_installed, specs

EVAL_ENV = "GLOWAI_LABELER_EVAL"
FAILURE_MODES = ["missed small lesions", "false spots on texture", "hair or beard", "glasses", "lighting",
                 "side view", "makeup", "scars or marks", "label noise"]
SORTS = ("error of the first model", "where they differ most")

db, root = store(), workspace_root()
st.title("Error analysis")
folders = [Path(p) for p in os.environ.get(EVAL_ENV, "").split(os.pathsep) if p]
folders = [f for f in folders if f.is_dir()]
if photo_folder() is not None:  # labels exported from the Annotate page are labelled sets too
    folders += [f for f in exported_folders(photo_folder()) if f not in folders]
if not folders:
    st.info("No labelled real set configured: start the studio with `glowai labeler --data DIR --eval FOLDER` "
            "(an ACNE04-like folder with acne04v2_lesions.json, or images/ plus labels.csv).")
    st.stop()
installed = [s.name for s in specs().values() if s.task == "blemish-segmentation" and is_installed(s)] + [BASELINE]
left, middle, right = st.columns(3)
folder = left.selectbox("Labelled set", folders, format_func=lambda p: p.name, key="errors_folder")
cached = cached_runs(root, read_json).get(safe_name(folder.name), {})  # model -> its cached run on this set
models = installed + [m for m in cached if m not in installed]  # cached-only models: results to read, not to run
model = middle.selectbox("Model", models, key="errors_model")
others = [m for m in models if m != model]
preferred = ([m for m in others if m != BASELINE and m in cached] or [m for m in others if m != BASELINE])[:1]
other = right.selectbox("Compare with", [None, *others], index=1 + others.index(preferred[0]) if preferred else 0,
                        format_func=lambda m: "none" if m is None else m, key="errors_versus",
                        help="a second model (v1 against v2): metrics and failure gallery side by side")
kind = "lesions" if (folder / "acne04v2_lesions.json").is_file() else "image labels"


def cache_of(name: str) -> Path:
    return cached.get(name) or root / "error-analysis" / f"{run_name(name, folder.name)}.json"


def analyse(name: str, on_photo) -> dict:
    if kind == "lesions":
        return eval_acne(folder, name, progress=False, on_photo=on_photo)
    table = image_level_eval(folder / "labels.csv", folder / "images", None if name == BASELINE else name,
                             on_photo=on_photo)
    return {"model": name, "rows": table.to_dict("records")}


def run_analysis(names: list[str]) -> None:
    bar = st.progress(0.0, text="analysing photos...")
    for step, name in enumerate(names):
        def on_photo(done: int, total: int, step: int = step, name: str = name) -> None:
            bar.progress((step + done / total) / len(names), text=f"{name}: photo {done + 1} of {total}")

        try:
            result = analyse(name, on_photo)
        except GlowAIError as err:
            st.error(str(err))
            st.stop()
        write_atomic(cache_of(name), json.dumps(result).encode())
    bar.empty()


def run_label(name: str) -> str:
    return f"{'Run again' if cache_of(name).is_file() else 'Run the analysis'} ({kind}, {name})"


not_here = "not installed: its cached results can be read, not made again"
buttons = st.columns(3) if other else [st.container()]
todo = []
if buttons[0].button(run_label(model), type="primary", key="errors_run", disabled=model not in installed,
                     help=None if model in installed else not_here):
    todo = [model]
if other:
    if buttons[1].button(run_label(other), key="errors_run_b", disabled=other not in installed,
                         help=None if other in installed else not_here):
        todo = [other]
    if buttons[2].button("Run both", key="errors_run_both", disabled=not {model, other} <= set(installed)):
        todo = [model, other]
if todo:
    run_analysis(todo)
if not cache_of(model).is_file():
    st.caption("Results are kept in the dataset folder (error-analysis/) and shown here after the run.")
    st.stop()
tags_run = cache_of(model).stem
result = read_json(cache_of(model))
second = read_json(cache_of(other)) if other and cache_of(other).is_file() else None
st.caption(f"Run `{tags_run}` · results in {cache_of(model).relative_to(root)}"
           + (f" · against `{cache_of(other).stem}`" if second is not None else ""))
if other and second is None:
    st.info(f"{other} has no results on {folder.name} yet: run it to see both models side by side.")


def picture(name: str, *entries: dict | None, markers=MARKERS) -> np.ndarray:
    """The photo with expert circles (green) and each model's predicted lesion centres."""
    try:
        return lesion_picture(folder / "images" / name, *entries, markers=markers)
    except GlowAIError as err:
        st.warning(str(err))
        return np.full((320, 320, 3), 200, np.uint8)


def tag_editor(sample: str, existing: list[str]) -> None:
    chosen = st.multiselect(f"Failure modes ({model})" if second is not None else "Failure modes",
                            sorted(set(FAILURE_MODES) | set(existing)), default=existing,
                            key=f"errors_tags_{sample}", accept_new_options=True)
    if sorted(chosen) != sorted(existing) and st.button("Save", key=f"errors_save_{sample}"):
        db.tag_failure(tags_run, sample, chosen, curator())
        st.rerun()


def side_by_side() -> None:
    st.subheader(f"{model} against {other}")
    st.caption(f"change = {other} minus {model}; better = the model ahead on that figure")
    table = versus_table([(model, result), (other, second)])
    st.markdown("**Overall**")
    st.dataframe(section(table, "overall"), hide_index=True)
    grouped = table[table["section"] != "overall"]
    figures = ["all", *dict.fromkeys(grouped["metric"])]
    figure = st.selectbox("Figures per group", figures, key="errors_versus_figure",
                          help="one figure (recall, count error...) across grades and skin tones, or all of them")
    for part, title in (("per grade", "Per ACNE04 grade"), ("per class", "Per class"), ("per skin tone", "Per skin tone")):
        rows = section(table, part)
        rows = rows if figure == "all" else rows[rows["metric"] == figure]
        if len(rows):
            st.markdown(f"**{title}**")
            st.dataframe(rows, hide_index=True, height=min(460, 38 + 35 * len(rows)))


def order() -> str:
    chosen = st.radio("Order", SORTS, horizontal=True, key="errors_sort")
    return "first" if chosen == SORTS[0] else "difference"


saved = db.failure_tags(tags_run).groupby("sample_id")["tag"].apply(list).to_dict()
if second is not None:
    side_by_side()
if kind == "lesions":
    table = lesion_table(result)
    if second is None:
        cols = st.columns(6)
        for column, (name, key) in zip(cols, [("lesion recall", "recall"), ("precision", "precision"),
                                              ("false positives / photo", "fp_per_image"),
                                              ("count error (MAE)", "count_mae"),
                                              ("Spearman(count, grade)", "spearman"), ("no face: whole frame", "whole_frame")],
                                       strict=True):
            column.metric(name, "-" if result.get(key) is None else result[key])
        st.subheader("Per skin tone")
        st.dataframe(per_tone(table), hide_index=True)
    title = "ACNE04 grade (rows) against the grade implied by the predicted count (columns; Hayashi bands)"
    matrix = confusion(table, "grade", "predicted_grade", [0, 1, 2, 3])
    if second is None:
        st.plotly_chart(confusion_heatmap(matrix, title), key="errors_confusion")
    else:
        mine, theirs = st.columns(2)
        mine.plotly_chart(confusion_heatmap(matrix, f"{model}: grade against predicted grade"), key="errors_confusion")
        theirs.plotly_chart(confusion_heatmap(confusion(lesion_table(second), "grade", "predicted_grade", [0, 1, 2, 3]),
                                              f"{other}: grade against predicted grade"), key="errors_confusion_b")
    cells = [(r, c) for r in matrix.index for c in matrix.columns if matrix.loc[r, c] > 0]
    cell = st.selectbox(f"Open a cell ({model})", cells, key="errors_cell",
                        format_func=lambda rc: f"grade {rc[0]} ({GRADE_NAMES[rc[0]]}) predicted {rc[1]} "
                                               f"({GRADE_NAMES[rc[1]]}): {matrix.loc[rc[0], rc[1]]} photos")
    behind = cell_samples(table, "grade", "predicted_grade", *cell) if cell else []
    if second is not None and behind:
        st.caption(legend([model, other]))
    gallery = st.columns(4)
    for position, name in enumerate(behind[:8]):
        both = [second["per_image"].get(name)] if second is not None else []
        gallery[position % 4].image(picture(name, result["per_image"][name], *both), caption=name)
    st.subheader("Failure gallery (most missed + false lesions first)")
    count = int(st.number_input("Photos", 4, 48, 12, step=4, key="errors_n"))
    if second is None:
        st.caption("green circles: expert lesions · red crosses: lesions the model found")
        for row in table.dropna(subset=["truth"]).head(count).to_dict("records"):
            photo, info = st.columns([2, 3])
            photo.image(picture(row["file"], result["per_image"][row["file"]]))
            with info:
                st.markdown(f"**{row['file']}** · grade {row['grade']} · expert lesions {int(row['truth'])}, found "
                            f"{int(row['matched'])}, missed {int(row['missed'])}, false {int(row['false_positives'])} · "
                            f"tone {row['tone']} · {row['mode'].replace('_', ' ')}")
                tag_editor(row["file"], saved.get(row["file"], []))
    else:
        st.caption(f"green circles: expert lesions · left: {model} ({MARKERS[0][2]}) · right: {other} ({MARKERS[1][2]})")
        pairs = paired_photos(result, second, by=order()).dropna(subset=["truth"])
        for row in pairs.head(count).to_dict("records"):
            name = row["file"]
            photo_a, photo_b, info = st.columns([2, 2, 3])
            photo_a.image(picture(name, result["per_image"][name]), caption=model)
            photo_b.image(picture(name, second["per_image"][name], markers=MARKERS[1:]), caption=other)
            with info:
                st.markdown(f"**{name}** · grade {row['grade']} · expert lesions {int(row['truth'])} · tone {row['tone']}"
                            f"  \n{model}: found {int(row['matched_a'])}, missed {int(row['missed_a'])}, false "
                            f"{int(row['false_positives_a'])}  \n{other}: found {int(row['matched_b'])}, missed "
                            f"{int(row['missed_b'])}, false {int(row['false_positives_b'])}  \n"
                            f"errors apart: {int(row['difference'])}")
                tag_editor(name, saved.get(name, []))
else:
    table = pd.DataFrame(result["rows"])
    conditions = [c for c in table.columns if f"{c}_pred" in table.columns]
    if second is None:
        st.subheader("Per condition")
        st.dataframe(per_class_scores(table), hide_index=True)
    shown = st.selectbox("Confusion matrix of", conditions, key="errors_condition")
    matrix = confusion(table, shown, f"{shown}_pred", [0, 1])
    st.plotly_chart(confusion_heatmap(matrix, f"{shown}: present (1) or not (0)"
                                      + (f", {model}" if second is not None else "")), key="errors_confusion_img")
    cells = [(r, c) for r in matrix.index for c in matrix.columns if matrix.loc[r, c] > 0]
    cell = st.selectbox("Open a cell", cells, key="errors_cell_img",
                        format_func=lambda rc: f"truth {rc[0]}, predicted {rc[1]}: {matrix.loc[rc[0], rc[1]]} photos")
    table["wrong"] = sum((table[c] != table[f"{c}_pred"]).astype(int) for c in conditions)
    if second is None:
        st.subheader("Per skin tone: wrong calls per photo")
        st.dataframe(table.groupby("tone")["wrong"].mean().round(2).reset_index(), hide_index=True)
    st.subheader("Failure gallery (most wrong conditions first)")
    behind = cell_samples(table, shown, f"{shown}_pred", *cell) if cell else []
    if second is None:
        listed = behind or table.sort_values("wrong", ascending=False)["file"].tolist()
        pairs = None
    else:
        pairs = paired_labels(result, second, by=order()).set_index("file", drop=False)
        listed = [name for name in pairs.index if not behind or name in behind]
    for name in listed[:12]:
        row = table.loc[table["file"] == name].iloc[0]
        photo, info = st.columns([2, 3])
        photo.image(picture(name, None))
        with info:
            if pairs is None:
                st.markdown(f"**{name}** · " + " · ".join(f"{c}: truth {row[c]}, predicted {row[f'{c}_pred']} "
                                                           f"(severity {row[f'{c}_severity']})" for c in conditions))
            else:
                paired = pairs.loc[name]
                st.markdown(f"**{name}** · wrong calls {model} {int(paired['wrong_a'])}, {other} {int(paired['wrong_b'])}  \n"
                            + " · ".join(f"{c}: truth {row[c]}, {model} {paired[f'{c}_pred_a']}, "
                                         f"{other} {paired[f'{c}_pred_b']}" for c in conditions))
            tag_editor(name, saved.get(name, []))
