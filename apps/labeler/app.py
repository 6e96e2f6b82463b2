"""GlowAI studio (Streamlit): curation of synthetic data, labels of real photos, and error
analysis of the model.

Start it with `glowai labeler [--data DIR] [--photos DIR] [--db URL] [--port P]`, which sets
GLOWAI_LABELER_DATA / GLOWAI_LABELER_PHOTOS / GLOWAI_LABELER_DB and runs `streamlit run` on this
file. The synthetic pages need --data; Annotate needs --photos.
"""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `streamlit run` puts only this folder on the path
    sys.path.insert(0, str(ROOT))

from apps.labeler.common import curator, has_dataset, photo_folder  # noqa: E402

st.set_page_config(page_title="GlowAI studio", layout="wide")
PAGES = Path(__file__).parent / "views"  # not pages/, which Streamlit would list on its own
synthetic, real = has_dataset(), photo_folder() is not None
if not (synthetic or real):
    st.error("Nothing to curate yet: start the studio with `glowai labeler --data DIR` (a dataset made by "
             "`glowai synth`) and/or `glowai labeler --photos DIR` (real photos to annotate).")
    st.stop()
curate = []
if synthetic:
    curate += [st.Page(PAGES / "review.py", title="Review", icon=":material/grid_view:", default=True),
               st.Page(PAGES / "inspect.py", title="Inspect", icon=":material/zoom_in:")]
if real:
    curate.append(st.Page(PAGES / "annotate.py", title="Annotate", icon=":material/ads_click:", default=not synthetic))
curate += [st.Page(PAGES / "stats.py", title="Dataset stats", icon=":material/bar_chart:"),
           st.Page(PAGES / "export.py", title="Export", icon=":material/ios_share:")]
navigation = st.navigation({
    "Curate": curate,
    "Model": [st.Page(PAGES / "errors.py", title="Error analysis", icon=":material/troubleshoot:"),
              st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare:")],
})
with st.sidebar:
    name = st.text_input("Curator", value=curator(), max_chars=64,
                         help="recorded with every decision and label in the audit log").strip()
    st.session_state["curator"] = name or curator()
    st.query_params["curator"] = st.session_state["curator"]  # a reload or bookmark keeps who is curating
navigation.run()
