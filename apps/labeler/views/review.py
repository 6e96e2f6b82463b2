"""Review: the filtered grid of samples, one in focus with keyboard shortcuts, bulk actions."""

import streamlit as st

from apps.labeler.common import curator, data_root, legend_markdown, reviewed, store, triptych
from core.curation.dataset import QC_FLAGS, SORTS, UNREVIEWED, Filters, apply_filters, page
from core.curation.store import STATUSES
from core.labels import CONDITIONS

db, root = store(), data_root()
table = reviewed()

with st.sidebar:
    st.subheader("Filters")
    filters = Filters(
        classes=st.multiselect("Class", [c.name for c in CONDITIONS], key="review_classes"),
        severities=st.multiselect("Severity (primary)", [0, 1, 2, 3], key="review_severity"),
        tones=st.multiselect("Skin tone", sorted(table["tone"].unique()), key="review_tones"),
        identities=st.multiselect("Identity", sorted(table["identity"].unique()), key="review_identities"),
        generators=st.multiselect("Generator", sorted(table["generator"].unique()), key="review_generators"),
        qc_flags=st.multiselect("QC flags", list(QC_FLAGS), key="review_flags",
                                help="faint: delta E < 4; sticker edge: edge ratio > 2.5; large area: > 30% of "
                                     "skin; redrawn: an earlier attempt failed QC"),
        statuses=st.multiselect("Review status", [UNREVIEWED, *STATUSES], key="review_statuses"),
        tag=st.text_input("Tag", key="review_tag").strip(),
        sort=st.selectbox("Sort by", list(SORTS), key="review_sort"),
        descending=st.toggle("Descending", key="review_desc"),
    )
    size = st.select_slider("Per page", [12, 24, 48], value=24, key="review_size")

selected = apply_filters(table, filters)
counts = selected["status"].value_counts()
st.title("Review")
st.caption(f"**{len(selected):,}** of {len(table):,} samples match · "
           + " · ".join(f"{name} {counts.get(name, 0):,}" for name in (UNREVIEWED, *STATUSES))
           + " · masks: " + legend_markdown())



def bulk_decide(ids: list[str], action: str) -> None:
    """One transaction for the whole filtered set; the confirmation box is cleared afterwards."""
    done = db.decide(ids, action, curator())
    st.session_state["review_bulk_sure"] = False
    st.toast(f"{done:,} samples marked {action}")


with st.expander(f"Bulk action on all {len(selected):,} filtered samples"):
    left, right = st.columns(2)
    with left:
        action = st.radio("Decision", STATUSES, horizontal=True, key="review_bulk_action")
        sure = st.checkbox(f"Yes, record '{action}' for all {len(selected):,}", key="review_bulk_sure")
        st.button("Apply to the filtered set", disabled=not sure or selected.empty, key="review_bulk_go",
                  on_click=bulk_decide, args=(selected["id"].tolist(), action))
    with right:
        bulk_tag = st.text_input("Tag to add", key="review_bulk_tag")
        if st.button("Tag the filtered set", disabled=not bulk_tag.strip() or selected.empty, key="review_bulk_tag_go"):
            db.add_tags(selected["id"].tolist(), [bulk_tag], curator())
            st.toast(f"tagged {len(selected):,} samples '{bulk_tag.strip()}'")
            st.rerun()

if selected.empty:
    st.info("No sample matches these filters.")
    st.stop()

pages = max(1, -(-len(selected) // size))
number = st.number_input(f"Page (of {pages})", 1, pages, 1, key="review_page")
rows = page(selected, number - 1, size).to_dict("records")
focus = min(st.session_state.get("review_focus", 0), len(rows) - 1)
record = rows[focus]


def decide(sample_id: str, status: str, advance: bool) -> None:
    db.decide([sample_id], status, curator())
    if advance:
        st.session_state["review_focus"] = min(focus + 1, len(rows) - 1)


st.subheader(f"In focus: {record['id']}")
picture, actions = st.columns([3, 2])
with picture:
    st.image(triptych(record, 300), caption="generated · mask overlay · clean face")
with actions:
    st.markdown(f"**{record['status']}** · classes {', '.join(record['classes'])} · severity "
                f"{record['primary_severity']} ({record['primary']}) · tone {record['tone']} · identity "
                f"{record['identity']} · {record['generator']}")
    st.caption(f"QC: delta E {record['qc_delta_e']:.1f} · area {record['qc_area_pct']:.1f}% · edge ratio "
               f"{record['qc_edge_ratio']:.2f} · flags {', '.join(record['qc_flags']) or 'none'} · tags "
               f"{', '.join(record['tags']) or 'none'}")
    a, x, f = st.columns(3)
    a.button("Accept", shortcut="A", key="review_accept", on_click=decide, args=(record["id"], "accepted", True),
             type="primary", width="stretch")
    x.button("Reject", shortcut="X", key="review_reject", on_click=decide, args=(record["id"], "rejected", True),
             width="stretch")
    f.button("Flag", shortcut="F", key="review_flag", on_click=decide, args=(record["id"], "flagged", True),
             width="stretch")
    prev, nxt = st.columns(2)
    prev.button("Previous", shortcut="Left", key="review_prev", width="stretch",
                on_click=lambda: st.session_state.update(review_focus=max(0, focus - 1)))
    nxt.button("Next", shortcut="Right", key="review_next", width="stretch",
               on_click=lambda: st.session_state.update(review_focus=min(len(rows) - 1, focus + 1)))
    st.caption("Keys: A accept · X reject · F flag · ← → move")
    with st.form("review_annotate", clear_on_submit=True, border=False):
        tag = st.text_input("Add tags (comma separated)")
        note = st.text_input("Add a note")
        if st.form_submit_button("Save tags and note"):
            db.add_tags([record["id"]], tag.split(","), curator())
            db.add_note(record["id"], note, curator())
            st.rerun()
    notes = db.notes(record["id"])
    for item in notes.to_dict("records"):
        st.caption(f"{item['curator']}: {item['text']}")

st.divider()
columns = st.columns(4)
for position, item in enumerate(rows):
    with columns[position % 4]:
        st.image(triptych(item, 110))
        marker = "→ " if position == focus else ""
        st.caption(f"{marker}{item['id']} · {item['status']} · {', '.join(item['classes'])} · s{item['primary_severity']}")
        b1, b2, b3, b4 = st.columns(4)
        b1.button("✓", key=f"review_a_{item['id']}", help="accept", on_click=decide, args=(item["id"], "accepted", False))
        b2.button("✗", key=f"review_x_{item['id']}", help="reject", on_click=decide, args=(item["id"], "rejected", False))
        b3.button("⚑", key=f"review_f_{item['id']}", help="flag", on_click=decide, args=(item["id"], "flagged", False))
        b4.button("◎", key=f"review_focus_{item['id']}", help="focus",
                  on_click=lambda p=position: st.session_state.update(review_focus=p))
