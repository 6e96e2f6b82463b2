"""Plotly figures shared by the studio pages and the stakeholder report."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.curation.store import STATUSES
from core.labels import CONDITIONS

COLOURS = {c.name: "#{:02x}{:02x}{:02x}".format(*c.color) for c in CONDITIONS}
TONES = ["very light", "light", "intermediate", "tan", "brown", "dark"]


def _explode_classes(table: pd.DataFrame) -> pd.DataFrame:
    return table.explode("classes", ignore_index=True).rename(columns={"classes": "class"}).dropna(subset=["class"])


def balance_heatmap(table: pd.DataFrame) -> go.Figure:
    """Samples per class (rows) and primary severity (columns)."""
    exploded = _explode_classes(table)
    counts = pd.crosstab(exploded["class"], exploded["primary_severity"])
    counts = counts.reindex(index=[c.name for c in CONDITIONS], columns=[0, 1, 2, 3], fill_value=0)
    figure = px.imshow(counts, text_auto=True, color_continuous_scale="Blues", aspect="auto",
                       labels={"x": "severity", "y": "class", "color": "samples"},
                       title="Samples per class and severity")
    figure.update_xaxes(type="category").update_yaxes(type="category")  # severities 0-3 are levels, not numbers
    return figure.update_layout(height=340, margin={"t": 50, "b": 45})


def tone_bars(table: pd.DataFrame) -> go.Figure:
    """Samples per skin tone, split by class."""
    exploded = _explode_classes(table)
    counts = exploded.groupby(["tone", "class"]).size().reset_index(name="samples")
    order = [t for t in TONES if t in set(counts["tone"])] + sorted(set(counts["tone"]) - set(TONES))
    figure = px.bar(counts, x="tone", y="samples", color="class", color_discrete_map=COLOURS, barmode="group",
                    category_orders={"tone": order, "class": [c.name for c in CONDITIONS]},
                    title="Samples per skin tone and class")
    return figure.update_layout(height=340, margin={"t": 50, "b": 45})


def qc_histograms(table: pd.DataFrame) -> go.Figure:
    metrics = [("qc_delta_e", "delta E (visibility)"), ("qc_area_pct", "mask area, % of skin"),
               ("qc_edge_ratio", "edge ratio"), ("qc_ring_contrast", "ring contrast")]
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=[title for _, title in metrics])
    for column, (metric, _) in enumerate(metrics, start=1):
        figure.add_trace(go.Histogram(x=table[metric], nbinsx=30, marker_color="#6c7ae0", showlegend=False),
                         row=1, col=column)
    return figure.update_layout(height=280, title="QC distributions", margin={"t": 70, "b": 45})


def status_bar(table: pd.DataFrame) -> go.Figure:
    counts = table["status"].value_counts().reindex(["unreviewed", *STATUSES], fill_value=0).reset_index()
    counts.columns = ["status", "samples"]
    figure = px.bar(counts, x="samples", y="status", orientation="h", title="Review progress", text_auto=True,
                    color="status", color_discrete_map={"unreviewed": "#bbbbbb", "accepted": "#2ea043",
                                                        "rejected": "#d1242f", "flagged": "#d6a100"})
    return figure.update_layout(height=240, showlegend=False, margin={"t": 50, "b": 45})


def confusion_heatmap(matrix: pd.DataFrame, title: str) -> go.Figure:
    figure = px.imshow(matrix.to_numpy(), x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index],
                       text_auto=True, color_continuous_scale="Purples", aspect="auto", title=title,
                       labels={"x": matrix.columns.name or "predicted", "y": matrix.index.name or "truth",
                               "color": "photos"})
    # categories, not numbers: plotly reads labels like "0".."3" as a numeric axis (ticks at -0.5, 0.5, ...)
    figure.update_xaxes(type="category").update_yaxes(type="category")
    return figure.update_layout(height=360, margin={"t": 50, "b": 45})
