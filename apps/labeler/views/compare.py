"""Compare: two training runs or evaluations side by side (v1 against v2)."""

import json
import os
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from core.model.compare import compare

RUNS_ENV = "GLOWAI_LABELER_RUNS"
st.title("Compare")
folders = [Path(p) for p in os.environ.get(RUNS_ENV, "").split(os.pathsep) if p]
runs = sorted({run for folder in folders if folder.is_dir() for run in folder.iterdir()
               if (run / "metrics.csv").is_file()})
if len(runs) < 2:
    st.info("Two training runs are needed (folders with metrics.csv): start the studio with "
            "`glowai labeler --data DIR --runs RUNS_FOLDER`.")
    st.stop()
left, right = st.columns(2)
run_a = left.selectbox("Run A", runs, index=0, format_func=lambda p: p.name, key="compare_a")
run_b = right.selectbox("Run B", runs, index=1, format_func=lambda p: p.name, key="compare_b")
st.subheader("Best validation epoch")
st.dataframe(compare(run_a, run_b), hide_index=True)

curves = pd.concat([pd.read_csv(run / "metrics.csv").assign(run=run.name) for run in (run_a, run_b)])
metric = st.selectbox("Curve", [c for c in curves.columns if c not in ("epoch", "run")],
                      index=list(c for c in curves.columns if c not in ("epoch", "run")).index("val_miou")
                      if "val_miou" in curves.columns else 0, key="compare_metric")
st.plotly_chart(px.line(curves, x="epoch", y=metric, color="run", markers=True, title=f"{metric} per epoch"),
                key="compare_curve")

rows = []
for run in (run_a, run_b):
    for name in sorted(run.glob("eval-*.json")):
        result = json.loads(name.read_text())
        rows += [{"run": run.name, "evaluation": name.stem, "metric": key, "value": value}
                 for key, value in result.items() if isinstance(value, (int, float)) and not isinstance(value, bool)]
if rows:
    st.subheader("Evaluations (eval-*.json in the run folders)")
    table = pd.DataFrame(rows).pivot_table(index=["evaluation", "metric"], columns="run", values="value").reset_index()
    st.dataframe(table, hide_index=True)
