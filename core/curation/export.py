"""Exports: the accepted subset as a new dataset version, an optional Hub push, and a stakeholder
report as one self-contained HTML file.

A version is written into a hidden temporary folder beside its final place and renamed into
place at the end: a killed export leaves no half-written version (only a `.partial-*` folder that
the next export removes).
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.curation.dataset import sample_path
from core.curation.store import Store, current_user
from core.curation.versus import cached_runs, legend, lesion_picture, paired_photos, safe_name, section, versus_table
from core.errors import GlowAIError
from core.labels import CONDITIONS


def next_version(root: Path) -> str:
    versions = Path(root) / "versions"
    taken = [int(p.name[1:]) for p in versions.glob("v*") if p.name[1:].isdigit()] if versions.is_dir() else []
    return f"v{max(taken, default=0) + 1}"


def export_version(root: Path, accepted: pd.DataFrame, store: Store, note: str = "",
                   on_sample: Callable[[int, int], None] | None = None) -> Path:
    """Write `accepted` (manifest rows) as root/versions/vN: images/, clean/, masks/ (index PNGs,
    the latest revision where there is one), masks_per_class/<class>/ (0/255 PNGs),
    manifest.parquet and version.json. Returns the new folder."""
    root = Path(root).resolve()
    if accepted.empty:
        raise GlowAIError("nothing to export: accept some samples first")
    versions = root / "versions"
    versions.mkdir(exist_ok=True)
    if not versions.resolve().is_relative_to(root):
        raise GlowAIError(f"{versions} leads outside the dataset folder (a symlink?); refusing to write there")
    for stale in versions.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    name = next_version(root)
    partial = versions / f".partial-{name}-{os.getpid()}"
    revised = store.latest_revisions()
    for folder in ("images", "clean", "masks", *(f"masks_per_class/{c.name}" for c in CONDITIONS)):
        (partial / folder).mkdir(parents=True)
    rows = []
    for done, record in enumerate(accepted.to_dict("records")):
        if on_sample is not None:
            on_sample(done, len(accepted))
        sample = record["id"]
        shutil.copyfile(sample_path(root, record["image"]), partial / "images" / f"{sample}.png")
        shutil.copyfile(sample_path(root, record["clean"]), partial / "clean" / f"{sample}.png")
        mask_file = revised.get(sample) or sample_path(root, record["mask"])
        mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2:
            raise GlowAIError(f"{mask_file}: not a single-channel mask PNG")
        cv2.imwrite(str(partial / "masks" / f"{sample}.png"), mask)
        for label in CONDITIONS:
            cv2.imwrite(str(partial / "masks_per_class" / label.name / f"{sample}.png"),
                        np.where(mask == label.index, 255, 0).astype(np.uint8))
        rows.append({**record, "image": f"images/{sample}.png", "clean": f"clean/{sample}.png",
                     "mask": f"masks/{sample}.png", "mask_revision": Path(mask_file).stem if sample in revised else ""})
    manifest = pd.DataFrame(rows).drop(columns=["status", "tags", "qc_flags"], errors="ignore")
    manifest.to_parquet(partial / "manifest.parquet", index=False)
    info = {"version": name, "source": str(root), "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "curator": current_user(), "samples": len(manifest), "revised_masks": int((manifest["mask_revision"] != "").sum()),
            "note": note, "classes": {c.name: int(manifest["classes"].map(lambda v, n=c.name: n in v).sum())
                                      for c in CONDITIONS}}
    (partial / "version.json").write_text(json.dumps(info, indent=2) + "\n")
    _fsync_tree(partial)
    final = versions / name
    os.rename(partial, final)  # atomic on one filesystem: the version appears whole or not at all
    return final


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def push_version(folder: Path, repo: str) -> str:
    """Upload a version folder to a Hub dataset repo when the network is allowed."""
    from weights import network_allowed

    if not network_allowed():
        return f"not uploaded: the network is off (HF_HUB_OFFLINE=1); {folder} is ready to push to {repo}"
    from huggingface_hub import HfApi

    try:
        HfApi().upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                              commit_message=f"GlowAI dataset {folder.name}")
    except Exception as err:  # noqa: BLE001 - hub errors are many; all mean "could not upload"
        raise GlowAIError(f"upload to {repo} failed: {str(err).splitlines()[0][:160]}") from None
    return f"uploaded {folder.name} to https://huggingface.co/datasets/{repo}"


def image_data_uri(rgb: np.ndarray, width: int = 220) -> str:
    scale = width / rgb.shape[1]
    small = cv2.resize(rgb, (width, max(1, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode()


def versus_sections(root: Path, folders: list[Path], photos: int = 6) -> list[tuple[str, object]]:
    """Report sections for every labelled set with two or more models' analyses cached
    (error-analysis/<model>__<set>.json): overall, per grade, per class and per skin tone tables
    with one column per model, and, where the set's folder is among `folders`, a small gallery of
    the photos on which the first two models differ most, with the expert circles and both models'
    markers (inline JPEGs)."""
    known = {safe_name(Path(folder).name): Path(folder) for folder in folders}
    sections: list[tuple[str, object]] = []
    for set_name, runs in cached_runs(root).items():
        if len(runs) < 2:
            continue
        results = {model: json.loads(path.read_text()) for model, path in runs.items()}
        names = list(results)
        versus = " vs ".join(names)
        table = versus_table(list(results.items()))
        note = f"{len(names)} models on the labelled set {set_name}"
        if len(names) == 2:
            note += f"; change = {names[1]} minus {names[0]}, better = the model ahead on that figure"
        sections.append((f"Model comparison on {set_name}: {versus}", note + "."))
        for part, title in (("overall", "Overall"), ("per grade", "Per ACNE04 grade"), ("per class", "Per class"),
                            ("per skin tone", "Per skin tone")):
            rows = section(table, part)
            if len(rows):
                sections.append((f"{title}: {versus}", rows))
        first, second = (results[name] for name in names[:2])
        folder = known.get(set_name)
        if folder is None or "per_image" not in first or "per_image" not in second:
            continue
        gallery = []
        pairs = paired_photos(first, second, by="difference").dropna(subset=["truth"])
        for row in pairs.head(photos).to_dict("records"):
            name = row["file"]
            try:
                picture = lesion_picture(folder / "images" / name, first["per_image"][name], second["per_image"][name])
            except (OSError, GlowAIError):
                continue  # the photo moved or went: the tables still stand
            gallery.append((image_data_uri(picture, 330),
                            f"{name} · {int(row['truth'])} expert lesions · {names[0]}: found {int(row['matched_a'])}, "
                            f"false {int(row['false_positives_a'])} · {names[1]}: found {int(row['matched_b'])}, "
                            f"false {int(row['false_positives_b'])}"))
        if gallery:
            sections.append((f"Where {names[0]} and {names[1]} differ most ({legend(names[:2])})", gallery))
    return sections


def stakeholder_report(title: str, sections: list[tuple[str, object]]) -> str:
    """One self-contained HTML page: each section is (heading, content) where content is a plotly
    figure, a DataFrame, a list of (image data URI, caption) pairs, or text. plotly.js is inlined once."""
    parts, plotly_included = [], False
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if hasattr(content, "to_html") and hasattr(content, "layout"):  # a plotly figure
            parts.append(content.to_html(full_html=False, include_plotlyjs="inline" if not plotly_included else False))
            plotly_included = True
        elif isinstance(content, pd.DataFrame):
            parts.append(content.to_html(index=False, border=0, classes="table", na_rep="-", float_format="{:.4g}".format))
        elif isinstance(content, list):
            parts.append('<div class="gallery">' + "".join(
                f'<figure><img src="{uri}" alt=""><figcaption>{html.escape(caption)}</figcaption></figure>'
                for uri, caption in content) + "</div>")
        else:
            parts.append(f"<p>{html.escape(str(content))}</p>")
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222}}
table.table {{border-collapse: collapse; margin: 1em 0}}
table.table td, table.table th {{padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right}}
.gallery {{display: flex; flex-wrap: wrap; gap: 12px}}
figure {{margin: 0; width: 330px; font-size: 12px}}
figure img {{width: 100%}}
.note {{color: #666; font-size: 13px}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">Made by GlowAI studio on {created}. GlowAI describes cosmetic skin features; it is not a
medical device and gives no diagnosis.</p>
{''.join(parts)}
</body></html>
"""
