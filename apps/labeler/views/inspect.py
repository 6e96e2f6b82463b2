"""Inspect: one sample large, classes toggled, mask touch-up saved as a new revision."""

import cv2
import numpy as np
import streamlit as st

from apps.labeler.common import curator, data_root, manifest, read_mask, read_rgb, sample_mask, store
from core.curation.dataset import sample_path
from core.labels import CONDITIONS, label_by_name
from core.overlays import mask_overlay

db, root = store(), data_root()
table = manifest()
ids = table["id"].tolist()
st.title("Inspect")
default = st.session_state.get("review_inspect", ids[0])
sample_id = st.selectbox("Sample", ids, index=ids.index(default) if default in ids else 0, key="inspect_sample")
record = table.loc[table["id"] == sample_id].iloc[0].to_dict()
image = read_rgb(sample_path(root, record["image"]))
mask, source = sample_mask(record)

shown = st.pills("Show classes", [c.name for c in CONDITIONS], selection_mode="multi",
                 default=[c.name for c in CONDITIONS], key="inspect_shown")


def components(mask: np.ndarray) -> list[tuple[str, int, int, np.ndarray]]:
    """(class, component number, area, bool mask) for every connected component of every class."""
    found = []
    for label in CONDITIONS:
        count, labels, stats, _ = cv2.connectedComponentsWithStats((mask == label.index).astype(np.uint8), connectivity=8)
        found += [(label.name, k, int(stats[k, cv2.CC_STAT_AREA]), labels == k) for k in range(1, count)]
    return found


st.subheader("Touch up")
parts = components(mask)
choices = {f"{name} #{k} ({area} px)": (name, part) for name, k, area, part in parts}
remove = st.multiselect("Delete components", list(choices), key="inspect_delete",
                        help="numbered left to right, top to bottom within each class")
grow_class = st.selectbox("Grow or shrink a class", [c.name for c in CONDITIONS], key="inspect_grow_class")
grow_px = st.slider("Pixels (negative shrinks)", -6, 6, 0, key="inspect_grow_px")

edited = mask.copy()
for name in remove:
    edited[choices[name][1]] = 0
if grow_px:
    index = label_by_name(grow_class).index
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow_px) + 1, 2 * abs(grow_px) + 1))
    region = (edited == index).astype(np.uint8)
    if grow_px > 0:
        edited[(cv2.dilate(region, kernel) > 0) & (edited == 0)] = index  # grows into unlabelled pixels only
    else:
        edited[(region > 0) & (cv2.erode(region, kernel) == 0)] = 0

left, right = st.columns(2)
left.image(mask_overlay(image, mask, alpha=0.6, classes=tuple(shown)), caption=f"current mask ({source})")
right.image(mask_overlay(image, edited, alpha=0.6, classes=tuple(shown)), caption="after touch-up (not saved yet)")
changed = int((edited != mask).sum())
operation = "; ".join([*(f"delete {r}" for r in remove), *([f"{'grow' if grow_px > 0 else 'shrink'} {grow_class} "
                                                            f"{abs(grow_px)} px"] if grow_px else [])])
if st.button(f"Save as a new revision ({changed} pixels changed)", disabled=changed == 0, type="primary",
             key="inspect_save"):
    ok, png = cv2.imencode(".png", edited)
    number = db.add_revision(sample_id, png.tobytes(), operation, curator())
    for key in ("inspect_delete", "inspect_grow_px"):
        st.session_state.pop(key, None)
    st.toast(f"saved revision {number} of {sample_id}; the original mask is kept")
    st.rerun()

st.subheader("Revisions")
history = db.revisions(sample_id)
if history.empty:
    st.caption("No revision yet: the original mask is in use.")
else:
    st.dataframe(history, hide_index=True)
    pick = st.selectbox("Compare with", ["original", *[f"r{n:03d}" for n in history["revision"]]], key="inspect_rev")
    other = read_mask(sample_path(root, record["mask"])) if pick == "original" else read_mask(
        db.resolve(history.loc[history["revision"] == int(pick[1:]), "path"].item()))
    st.image(mask_overlay(image, other, alpha=0.6, classes=tuple(shown)), caption=pick, width=420)
clean = read_rgb(sample_path(root, record["clean"]))
st.image(clean, caption="clean face", width=420)
