"""What every studio page shares: the configuration, cached store and manifest, pictures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import streamlit as st

from core.curation.dataset import load_manifest, sample_path, with_review
from core.curation.store import Store, current_user, default_url
from core.errors import GlowAIError
from core.labels import CONDITIONS
from core.overlays import mask_overlay

DATA_ENV, DB_ENV, PHOTOS_ENV = "GLOWAI_LABELER_DATA", "GLOWAI_LABELER_DB", "GLOWAI_LABELER_PHOTOS"


def has_dataset() -> bool:
    return bool(os.environ.get(DATA_ENV))


def photo_folder() -> Path | None:
    """The folder of real photos to annotate (`glowai labeler --photos DIR`), or None."""
    value = os.environ.get(PHOTOS_ENV)
    return Path(value).resolve() if value else None


def workspace_root() -> Path:
    """Where the studio keeps its store and caches: the synthetic dataset, else the photo folder."""
    if has_dataset():
        return data_root()
    folder = photo_folder()
    if folder is None or not folder.is_dir():
        st.error(f"Nothing to curate: start the studio with `glowai labeler --data DIR` and/or `--photos DIR` "
                 f"(or set {DATA_ENV} / {PHOTOS_ENV}).")
        st.stop()
    return folder


def data_root() -> Path:
    value = os.environ.get(DATA_ENV)
    if not value:
        st.error(f"No dataset: start the studio with `glowai labeler --data DIR` (or set {DATA_ENV}).")
        st.stop()
    root = Path(value).resolve()
    if not (root / "manifest.parquet").is_file():
        st.error(f"{root} has no manifest.parquet: point --data at a folder made by `glowai synth`.")
        st.stop()
    return root


@st.cache_resource(show_spinner=False)
def _store(url: str, root: str) -> Store:
    return Store(url, Path(root))


def store() -> Store:
    root = workspace_root()
    try:
        return _store(os.environ.get(DB_ENV) or default_url(root), str(root))
    except GlowAIError as err:
        st.error(str(err))
        st.stop()


@st.cache_data(show_spinner="Reading the manifest...")
def _manifest(root: str, mtime: float):
    return load_manifest(Path(root))


def manifest():
    root = data_root()
    return _manifest(str(root), (root / "manifest.parquet").stat().st_mtime)


def reviewed():
    """The manifest with the current status and tags of every sample (read fresh on each run)."""
    db = store()
    return with_review(manifest(), db.statuses(), db.tags())


def curator() -> str:
    """Who is curating: the sidebar's name, kept in the address (?curator=NAME) so a reload or a
    bookmark keeps it; the login name until someone types theirs."""
    if "curator" not in st.session_state:
        st.session_state["curator"] = (st.query_params.get("curator") or "").strip()[:64] or current_user()
    return st.session_state["curator"]


@st.cache_data(show_spinner=False, max_entries=2048)
def _read_rgb(path: str, mtime: float, width: int | None) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise GlowAIError(f"{path}: cannot be read")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if width and image.shape[1] > width:
        image = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])), interpolation=cv2.INTER_AREA)
    return image


@st.cache_data(show_spinner=False, max_entries=2048)
def _read_mask(path: str, mtime: float) -> np.ndarray:
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2:
        raise GlowAIError(f"{path}: not a single-channel mask PNG")
    return mask


def read_rgb(path: Path, width: int | None = None) -> np.ndarray:
    return _read_rgb(str(path), path.stat().st_mtime, width)


def read_mask(path: Path) -> np.ndarray:
    return _read_mask(str(path), path.stat().st_mtime)


def sample_mask(record: dict) -> tuple[np.ndarray, str]:
    """The sample's current mask (latest revision, else the original) and where it came from."""
    root = data_root()
    revised = store().latest_revisions().get(record["id"])
    if revised is not None:
        return read_mask(revised), revised.stem
    return read_mask(sample_path(root, record["mask"])), "original"


def triptych(record: dict, width: int = 200, mask: np.ndarray | None = None,
             classes: tuple[str, ...] | None = None) -> np.ndarray:
    """Generated image | mask overlay | clean face, side by side, each `width` wide; a grey card
    (and a warning) when the sample's files are missing or point outside the dataset."""
    try:
        return _triptych(record, width, mask, classes)
    except (GlowAIError, OSError) as err:
        st.warning(f"{record.get('id')}: {err}")
        return np.full((width, 3 * width, 3), 200, np.uint8)


def _triptych(record: dict, width: int, mask: np.ndarray | None, classes: tuple[str, ...] | None) -> np.ndarray:
    root = data_root()
    image = read_rgb(sample_path(root, record["image"]))
    clean = read_rgb(sample_path(root, record["clean"]), width)
    mask = sample_mask(record)[0] if mask is None else mask
    overlay = mask_overlay(image, mask, alpha=0.6, classes=classes)
    small = [cv2.resize(a, (width, width), interpolation=cv2.INTER_AREA) for a in (image, overlay, clean)]
    return np.concatenate(small, axis=1)


def legend_markdown() -> str:
    return " ".join(f":{_colour_name(c.color)}-background[{c.title}]" for c in CONDITIONS)


def _colour_name(rgb: tuple[int, int, int]) -> str:
    # Streamlit's markdown backgrounds come in named colours: the nearest to each label colour
    named = {"red": (230, 57, 70), "orange": (255, 159, 28), "green": (46, 196, 182), "blue": (114, 137, 255)}
    return min(named, key=lambda n: sum((a - b) ** 2 for a, b in zip(named[n], rgb, strict=True)))


@st.cache_data(show_spinner=False, max_entries=64)
def _read_json(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())


def read_json(path: Path) -> dict:
    """A result JSON (error-analysis cache, eval-*.json), read again only when the file changes."""
    return _read_json(str(path), path.stat().st_mtime)
