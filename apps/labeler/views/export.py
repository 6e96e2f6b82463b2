"""Export: the accepted subset as a new dataset version, a Hub push, labels of real photos, and a
stakeholder report."""

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from apps.labeler.charts import balance_heatmap, confusion_heatmap, qc_histograms, status_bar, tone_bars
from apps.labeler.common import curator, has_dataset, photo_folder, reviewed, store, triptych, workspace_root
from core.curation.annotate import agreement, export_labels, exported_folders, model_error_summary, photo_path
from core.curation.errors import confusion, lesion_table, per_tone
from core.curation.export import export_version, image_data_uri, push_version, stakeholder_report, versus_sections
from core.errors import GlowAIError
from core.files import write_atomic

EVAL_ENV = "GLOWAI_LABELER_EVAL"  # the labelled sets, for the comparison gallery's photos
db, root = store(), workspace_root()
st.title("Export")


@st.cache_data(show_spinner=False, max_entries=4096)
def photo_size(path: str, mtime: float) -> tuple[int, int]:
    from core.imageio import load_image

    image = load_image(path)
    return int(image.shape[1]), int(image.shape[0])


if photo_folder() is not None:
    st.subheader("Labels of real photos")
    labels = db.photo_labels()
    who = curator()
    mine = labels[labels["curator"] == who]
    st.caption(f"{len(mine):,} photos labelled by {who}. The export is a labelled set: labels.csv (image-level "
               f"grades) and acne04v2_lesions.json (lesion circles) beside a link to the photos, read unchanged by "
               f"`glowai eval acne --data FOLDER`, the Error analysis page and `glowai train --real FOLDER`.")
    if st.button(f"Export {who}'s labels", type="primary", disabled=mine.empty, key="export_labels_go"):
        try:
            sizes = {}
            for name in mine["photo"]:
                path = photo_path(photo_folder(), name)
                sizes[name] = photo_size(str(path), path.stat().st_mtime)
            target = export_labels(photo_folder(), labels, who, sizes)
        except GlowAIError as err:
            st.error(str(err))
        else:
            st.success(f"wrote {target.relative_to(photo_folder())} ({len(mine):,} photos)")
    done = exported_folders(photo_folder())
    if done:
        st.dataframe([{"folder": f.name, **json.loads((f / "export.json").read_text())} for f in done
                      if (f / "export.json").is_file()], hide_index=True, key="export_labels_done")

if not has_dataset():
    table = accepted = None
else:
    table = reviewed()
    accepted = table[table["status"] == "accepted"]
    st.subheader("New dataset version")
    st.caption(f"{len(accepted):,} accepted of {len(table):,} samples; masks use their latest revision.")
    note = st.text_input("Note for this version", key="export_note")
    if st.button("Export the accepted samples", type="primary", disabled=accepted.empty, key="export_go"):
        bar = st.progress(0.0, text="copying samples...")
        try:
            folder = export_version(root, accepted, db, note,
                                    on_sample=lambda done, total: bar.progress(done / total, text=f"sample {done + 1} of {total}"))
        except GlowAIError as err:
            st.error(str(err))
        else:
            st.session_state["export_last"] = str(folder)
            st.success(f"wrote {folder.relative_to(root)} ({len(accepted):,} samples)")
    versions = sorted((root / "versions").glob("v*"), key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else 0)
    if versions:
        st.dataframe([json.loads((v / "version.json").read_text()) for v in versions if (v / "version.json").is_file()],
                     hide_index=True)
        chosen = st.selectbox("Push a version to a Hub dataset", versions, index=len(versions) - 1,
                              format_func=lambda p: p.name, key="export_push_version")
        repo = st.text_input("Hub dataset repo id", placeholder="glowai/synth-faces", key="export_repo")
        if st.button("Push", disabled=not repo.strip(), key="export_push"):
            try:
                st.info(push_version(chosen, repo.strip()))
            except GlowAIError as err:
                st.error(str(err))

st.subheader("Stakeholder report")
st.caption("One self-contained HTML file: dataset balance, QC, review progress, the error analyses run "
           "in this studio, and models side by side (v1 against v2) where two were run on the same labelled set.")
if st.button("Build the report", key="export_report"):
    sections = []
    if table is not None:
        sections += [("Dataset", f"{len(table):,} synthetic samples from {table['identity'].nunique()} identities; "
                                 f"{len(accepted):,} accepted so far."),
                     ("Balance", balance_heatmap(table)), ("Skin tones", tone_bars(table)),
                     ("Quality checks", qc_histograms(table)), ("Review progress", status_bar(table))]
        sample = accepted.head(6) if len(accepted) else table.head(6)
        sections.append(("Example samples (generated, mask, clean)",
                         [(image_data_uri(triptych(r, 160), 480), r["id"]) for r in sample.to_dict("records")]))
    if photo_folder() is not None:
        labels = db.photo_labels()
        pairs, errors = agreement(labels), model_error_summary(labels)
        sections += [("Real photos labelled", f"{labels['photo'].nunique() if len(labels) else 0:,} photos of "
                                              f"{photo_folder().name} labelled by {labels['curator'].nunique() if len(labels) else 0} "
                                              f"curator(s)."),
                     ("Curator agreement (Cohen's kappa per condition, lesion point F1)",
                      pairs if len(pairs) else "needs two curators on the same photos"),
                     ("The model against the curators", errors if len(errors) else "no photo labelled from suggestions")]
    sections += versus_sections(root, [Path(p) for p in os.environ.get(EVAL_ENV, "").split(os.pathsep) if p])
    for cache in sorted((root / "error-analysis").glob("*.json")):
        result = json.loads(cache.read_text())
        if "per_image" not in result:
            continue
        lesions = lesion_table(result)
        metrics = {k: result.get(k) for k in ("recall", "precision", "fp_per_image", "count_mae", "spearman",
                                              "whole_frame", "photos")}
        failures = db.failure_tags(cache.stem)
        sections += [(f"Error analysis: {cache.stem}", ", ".join(f"{k} {v}" for k, v in metrics.items())),
                     ("Per skin tone", per_tone(lesions)),
                     ("Grade confusion", confusion_heatmap(confusion(lesions, "grade", "predicted_grade", [0, 1, 2, 3]),
                                                           "ACNE04 grade against predicted grade")),
                     ("Failure modes tagged", failures["tag"].value_counts().rename_axis("failure mode")
                      .reset_index(name="photos") if len(failures) else "none tagged yet"),
                     ("Worst photos", lesions.head(10)[["file", "grade", "truth", "predicted", "matched",
                                                        "false_positives", "tone"]])]
    page = stakeholder_report("GlowAI studio report", sections)
    target = root / "reports" / f"report-{datetime.now(UTC):%Y%m%d-%H%M%S}.html"
    write_atomic(target, page.encode())
    st.session_state["export_report_path"] = str(target)
    st.success(f"wrote {target.relative_to(root)} ({len(page) // 1024} KB)")
if "export_report_path" in st.session_state:
    path = st.session_state["export_report_path"]
    with open(path, "rb") as handle:
        st.download_button("Download the report", handle.read(), file_name=path.rsplit("/", 1)[-1], mime="text/html",
                           key="export_download")
