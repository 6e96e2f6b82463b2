"""Dataset stats: balance of class x severity x skin tone, QC distributions, review progress; for
real photos, labelling progress, agreement between curators and the model's error against them."""

import streamlit as st

from apps.labeler.charts import balance_heatmap, qc_histograms, status_bar, tone_bars
from apps.labeler.common import has_dataset, photo_folder, reviewed, store
from core.curation.annotate import agreement, list_photos, model_error_summary
from core.errors import GlowAIError

st.title("Dataset stats")
if has_dataset():
    table = reviewed()
    st.caption(f"{len(table):,} samples · {table['identity'].nunique()} identities · generators: "
               + ", ".join(f"{g} {n:,}" for g, n in table["generator"].value_counts().items()))
    left, right = st.columns(2)
    left.plotly_chart(balance_heatmap(table), key="stats_balance")
    right.plotly_chart(tone_bars(table), key="stats_tones")
    st.plotly_chart(qc_histograms(table), key="stats_qc")
    st.plotly_chart(status_bar(table), key="stats_status")

if photo_folder() is not None:
    st.header("Real photos")
    labels = store().photo_labels()
    try:
        total = len(list_photos(photo_folder()))
    except GlowAIError as err:
        st.error(str(err))
        st.stop()
    per_curator = labels.groupby("curator").size() if len(labels) else {}
    st.caption(f"{total:,} photos in {photo_folder().name} · labelled: "
               + (", ".join(f"{who} {n:,}" for who, n in per_curator.items()) or "none yet"))
    st.subheader("Agreement between curators")
    pairs = agreement(labels)
    if pairs.empty:
        st.info("Agreement needs two curators who labelled the same photos (set the curator name in the sidebar).")
    else:
        st.dataframe(pairs, hide_index=True, key="stats_agreement")
        st.caption("Cohen's kappa per condition over photos both graded (\"can't tell\" left out; 1 = full agreement, "
                   "0 = chance); point F1: lesion points matched one-to-one, a point inside the other's circle.")
    st.subheader("The model against the curators")
    errors = model_error_summary(labels)
    if errors.empty:
        st.info("No photo labelled from the model's suggestions yet.")
    else:
        st.dataframe(errors, hide_index=True, key="stats_model_error")
