"""Compare: two training runs, and two models' evaluation results (v1 against v2), side by side."""

import os
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from apps.labeler.common import read_json, workspace_root
from core.curation.versus import SECTIONS, cached_runs, versus_table
from core.model.compare import compare

RUNS_ENV = "GLOWAI_LABELER_RUNS"
COUNTS = {"photos", "annotated", "whole_frame", "count", "epoch"}
st.title("Compare")
root = workspace_root()
folders = [Path(p) for p in os.environ.get(RUNS_ENV, "").split(os.pathsep) if p]
runs = sorted({run for folder in folders if folder.is_dir() for run in folder.iterdir()
               if (run / "metrics.csv").is_file()})


@st.cache_data(show_spinner=False)
def _versus(paths: tuple[str, str], names: tuple[str, str], mtimes: tuple[float, float]) -> pd.DataFrame:
    return versus_table([(name, read_json(Path(path))) for name, path in zip(names, paths, strict=True)])


def evaluations() -> dict[str, tuple[Path, str, str]]:
    """Label -> (JSON file, model, labelled set or run): the Error-analysis caches of this dataset
    folder, then eval-*.json in run folders (and the JSONs of a runs folder's eval/)."""
    found = {}
    for set_name, models in cached_runs(root, read_json).items():
        for model, path in models.items():
            found[f"{model} on {set_name} (error analysis)"] = (path, model, set_name)
    for folder in folders:
        files = sorted(folder.glob("*/eval-*.json")) + sorted(folder.glob("eval/*.json")) if folder.is_dir() else []
        for path in files:
            try:
                result = read_json(path)
            except ValueError:
                continue
            if isinstance(result, dict):
                model = str(result.get("model") or path.parent.name)
                found[f"{model} · {path.parent.name}/{path.name}"] = (path, model, path.parent.name)
    return found


def default_pair(found: dict, run_a: Path | None, run_b: Path | None) -> tuple[int, int]:
    """Two models on one labelled set if the caches hold such a pair, else the same eval file of
    the two runs picked above, else the first two."""
    labels = list(found)
    by_set: dict[str, list[int]] = {}
    for i, (path, _, where) in enumerate(found.values()):
        if path.parent.name == "error-analysis":
            by_set.setdefault(where, []).append(i)
    for indexes in by_set.values():
        if len(indexes) > 1:
            return indexes[0], indexes[1]
    if run_a is not None and run_b is not None:
        for i, label in enumerate(labels):
            path = found[label][0]
            twin = run_b / path.name
            if path.parent == run_a and twin.is_file():
                return i, [found[j][0] for j in labels].index(twin)
    return 0, 1


run_a = run_b = None
st.subheader("Training runs")
if len(runs) < 2:
    st.caption("Two training runs (folders with metrics.csv) are compared here: start the studio with "
               "`glowai labeler --data DIR --runs RUNS_FOLDER`.")
else:
    left, right = st.columns(2)
    run_a = left.selectbox("Run A", runs, index=0, format_func=lambda p: p.name, key="compare_a")
    run_b = right.selectbox("Run B", runs, index=1, format_func=lambda p: p.name, key="compare_b")
    st.markdown("**Best validation epoch**")
    st.dataframe(compare(run_a, run_b), hide_index=True)
    curves = pd.concat([pd.read_csv(run / "metrics.csv").assign(run=run.name) for run in (run_a, run_b)])
    metrics = [c for c in curves.columns if c not in ("epoch", "run")]
    metric = st.selectbox("Curve", metrics, index=metrics.index("val_miou") if "val_miou" in metrics else 0,
                          key="compare_metric")
    st.plotly_chart(px.line(curves, x="epoch", y=metric, color="run", markers=True, title=f"{metric} per epoch"),
                    key="compare_curve")

st.subheader("Evaluations")
found = evaluations()
if len(found) < 2:
    st.caption("Two evaluation results are compared here: the Error analysis page's runs (error-analysis/ in the "
               "dataset folder) or eval-*.json files in the run folders (`glowai eval acne --json RUN/eval-acne.json`).")
    if len(runs) < 2:
        st.info("Nothing to compare yet: two training runs (`--runs RUNS_FOLDER`) or two evaluations are needed.")
    st.stop()
labels = list(found)
first, second = default_pair(found, run_a, run_b)
left, right = st.columns(2)
eval_a = left.selectbox("Evaluation A", labels, index=first, key="compare_eval_a")
eval_b = right.selectbox("Evaluation B", labels, index=second, key="compare_eval_b")
paths = (found[eval_a][0], found[eval_b][0])
names = tuple(f"{letter}: {found[label][1]}" for letter, label in zip("AB", (eval_a, eval_b), strict=True))
table = _versus(tuple(map(str, paths)), names, tuple(p.stat().st_mtime for p in paths))
st.caption(f"change = B minus A; better = the one ahead on that figure · A: {paths[0]} · B: {paths[1]}")
st.dataframe(table, hide_index=True)

present = [s for s in SECTIONS if s in set(table["section"])]
part = st.selectbox("Chart", present, key="compare_eval_section")
rows = table[table["section"] == part]
if part == "overall":
    numbers = rows[list(names)].apply(pd.to_numeric, errors="coerce")
    rates = numbers.abs().le(1).all(axis=1) & ~rows["metric"].isin(COUNTS)
    x, chosen = "metric", rows[rates]  # the rates (recall, mIoU...) share one axis; counts and errors do not
else:
    metric = st.selectbox("Figure", list(dict.fromkeys(rows["metric"])), key="compare_eval_metric")
    x, chosen = "group", rows[rows["metric"] == metric]
long = chosen.melt(id_vars=[x], value_vars=list(names), var_name="evaluation", value_name="value")
long = long.assign(value=pd.to_numeric(long["value"], errors="coerce")).dropna()
st.plotly_chart(px.bar(long, x=x, y="value", color="evaluation", barmode="group",
                       title="overall: the rates" if part == "overall" else f"{part}: {metric}"), key="compare_eval_chart")
