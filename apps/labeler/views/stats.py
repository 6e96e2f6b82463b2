"""Dataset stats: balance of class x severity x skin tone, QC distributions, review progress."""

import streamlit as st

from apps.labeler.charts import balance_heatmap, qc_histograms, status_bar, tone_bars
from apps.labeler.common import reviewed

table = reviewed()
st.title("Dataset stats")
st.caption(f"{len(table):,} samples · {table['identity'].nunique()} identities · generators: "
           + ", ".join(f"{g} {n:,}" for g, n in table["generator"].value_counts().items()))
left, right = st.columns(2)
left.plotly_chart(balance_heatmap(table), key="stats_balance")
right.plotly_chart(tone_bars(table), key="stats_tones")
st.plotly_chart(qc_histograms(table), key="stats_qc")
st.plotly_chart(status_bar(table), key="stats_status")
