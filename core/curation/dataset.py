"""A synthetic dataset for curation: the manifest, review state joined in, filters, QC flags, pages.

Filtering works on columns only (no image is opened), so a 10,000-sample manifest filters in
milliseconds; images are read per page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import GlowAIError

UNREVIEWED = "unreviewed"
REQUIRED = ("id", "identity", "generator", "primary", "primary_severity", "classes", "tone", "image", "mask", "clean")
SORTS = {"id": "id", "delta E (visibility)": "qc_delta_e", "mask area %": "qc_area_pct",
         "edge ratio": "qc_edge_ratio", "ring contrast": "qc_ring_contrast", "skin tone (ITA)": "ita"}
# QC flags: samples that passed the generator's QC but sit near its limits and deserve a look.
QC_FLAGS = {
    "faint": lambda m: m["qc_delta_e"] < 4.0,
    "sticker edge": lambda m: m["qc_edge_ratio"] > 2.5,
    "large area": lambda m: m["qc_area_pct"] > 30.0,
    "redrawn": lambda m: m["attempt"] > 0,
}


def load_manifest(root: Path) -> pd.DataFrame:
    """The dataset's manifest.parquet with a `qc_flags` column (tuple of flag names)."""
    path = Path(root) / "manifest.parquet"
    if not path.is_file():
        raise GlowAIError(f"{root}: no manifest.parquet; point --data at a folder made by `glowai synth`")
    manifest = pd.read_parquet(path)
    missing = [c for c in REQUIRED if c not in manifest.columns]
    if missing:
        raise GlowAIError(f"{path}: not a GlowAI dataset manifest (missing {', '.join(missing)})")
    for column, default in (("qc_delta_e", np.nan), ("qc_edge_ratio", np.nan), ("qc_area_pct", np.nan),
                            ("qc_ring_contrast", np.nan), ("attempt", 0), ("ita", np.nan)):
        if column not in manifest.columns:
            manifest[column] = default
    flags = pd.DataFrame({name: rule(manifest).fillna(False).to_numpy(bool) for name, rule in QC_FLAGS.items()})
    manifest["qc_flags"] = [tuple(name for name in QC_FLAGS if row[name]) for row in flags.to_dict("records")]
    manifest["classes"] = manifest["classes"].map(tuple)
    return manifest.reset_index(drop=True)


def with_review(manifest: pd.DataFrame, statuses: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """The manifest with `status` (latest decision or 'unreviewed') and `tags` (tuple) columns."""
    status = dict(zip(statuses["sample_id"], statuses["status"], strict=True)) if len(statuses) else {}
    out = manifest.copy()
    out["status"] = out["id"].map(lambda sample: status.get(sample, UNREVIEWED))
    grouped = tags.groupby("sample_id")["tag"].apply(lambda t: tuple(sorted(t))).to_dict() if len(tags) else {}
    out["tags"] = out["id"].map(lambda s: grouped.get(s, ()))
    return out


@dataclass
class Filters:
    """Empty selections mean 'any'."""

    classes: list[str] = field(default_factory=list)  # samples containing ANY of these classes
    severities: list[int] = field(default_factory=list)  # primary severity
    tones: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    generators: list[str] = field(default_factory=list)
    qc_flags: list[str] = field(default_factory=list)  # samples with ANY of these flags
    statuses: list[str] = field(default_factory=list)
    tag: str = ""
    sort: str = "id"
    descending: bool = False


def apply_filters(table: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    keep = np.ones(len(table), bool)
    if filters.classes:
        wanted = set(filters.classes)
        keep &= table["classes"].map(lambda c: not wanted.isdisjoint(c)).to_numpy(bool)
    for column, values in (("primary_severity", filters.severities), ("tone", filters.tones),
                           ("identity", filters.identities), ("generator", filters.generators),
                           ("status", filters.statuses)):
        if values:
            keep &= table[column].isin(values).to_numpy(bool)
    if filters.qc_flags:
        wanted = set(filters.qc_flags)
        keep &= table["qc_flags"].map(lambda f: not wanted.isdisjoint(f)).to_numpy(bool)
    if filters.tag:
        keep &= table["tags"].map(lambda t: filters.tag in t).to_numpy(bool)
    selected = table[keep]
    if filters.sort not in SORTS:
        raise GlowAIError(f"sort by {filters.sort!r}; valid: {', '.join(SORTS)}")
    return selected.sort_values(SORTS[filters.sort], ascending=not filters.descending, kind="stable")


def page(table: pd.DataFrame, number: int, size: int) -> pd.DataFrame:
    """Page `number` (0-based) of `size` rows; a number past the end gives the last page."""
    pages = max(1, -(-len(table) // size))
    number = min(max(0, number), pages - 1)
    return table.iloc[number * size:(number + 1) * size]


def sample_path(root: Path, relative: str) -> Path:
    """A manifest path made absolute; one that leaves the dataset folder is refused."""
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise GlowAIError(f"manifest path {relative!r} points outside the dataset folder; refusing to read it")
    return path
