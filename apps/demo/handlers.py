"""Demo handlers: UI values in, core calls, UI values out. Layout and wiring live in ui.py.

Models load lazily, once per process, behind the cached getters below; per-visitor data (the
last analysis, a loaded preset, the live filter) lives in `gr.State` values passed in and out.
Bad input raises `gr.Error` with a plain message; the server keeps serving.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import tempfile
import time
from collections import deque
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from core.errors import FaceIndexError, GlowAIError, ImageDecodeError, ImageTooLargeError, NoFaceError
from core.filters import (
    LiveFilter,
    Preset,
    apply_makeup,
    builtin_presets,
    extract_makeup,
    load_preset,
    smooth_skin,
)
from core.filters import retouch as retouch_blemishes
from core.filters.masks import eye_unit
from core.labels import CONDITIONS, label_by_name
from core.overlays import face_crop_box, mask_overlay, report_card, with_legend, zone_overlay
from core.pipeline import Analysis, AnalyzeOptions, Analyzer
from core.regions import ZONE_TITLES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "data" / "examples"
CONDITION_TITLES = [label.title for label in CONDITIONS]
COLOR_MAP = {label.title: "#{:02x}{:02x}{:02x}".format(*label.color) for label in CONDITIONS}
MAKEUP_SOURCES = ("None", "Preset", "Reference photo", "Preset file")
FACE_CHOICE_PREFIX = "Face "


class UserError(gr.Error):
    """A message for the visitor about their input: shown in the page, not logged as a server error
    (so no traceback carrying a file name lands in the logs). Gradio renders the message as HTML:
    it is escaped, since it can quote an uploaded file's name."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(html.escape(message, quote=False), title=title, print_exception=False)


def gpu(fn):
    """`spaces.GPU` on a Hugging Face Space with ZeroGPU; the function itself elsewhere."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


@lru_cache(maxsize=1)
def analyzer() -> Analyzer:
    """The one Analyzer of this process (detector, mesh and blemish model load on first use)."""
    return Analyzer(AnalyzeOptions())


def warm_up() -> float:
    """Analyse a bundled portrait once, before the first visitor: every model loads now (and a
    missing ONNX export is made now), so nobody's first analysis waits for it. Seconds taken."""
    start = time.perf_counter()
    try:
        analyzer().analyze(EXAMPLES / "portrait-001.jpg")
    except GlowAIError as err:  # no model installed, say: the page explains that itself
        print(f"warm-up skipped: {err}", flush=True)
    return time.perf_counter() - start


@contextmanager
def friendly_errors():
    """Turn the core's typed errors into messages shown in the page."""
    try:
        yield
    except NoFaceError:
        raise UserError("No face found in this photo. Try a clear, front-facing photo in good light, or tick "
                       "'Close-up of skin' to analyse the whole frame.", title="No face") from None
    except ImageTooLargeError as err:
        raise UserError(f"{err}", title="Photo too large") from None
    except ImageDecodeError as err:
        raise UserError(f"{err}", title="Cannot read this file") from None
    except (FaceIndexError, GlowAIError) as err:
        raise UserError(str(err)) from None


def _need(photo: str | None, what: str = "a photo") -> str:
    if not photo:
        raise UserError(f"Upload {what} first (or pick an example).", title="Nothing to analyse")
    return photo


def face_index(choice: str | None) -> int:
    """'Face 2' -> 1; anything else -> 0 (the largest face)."""
    number = choice[len(FACE_CHOICE_PREFIX):].split(" ", 1)[0] if choice and choice.startswith(FACE_CHOICE_PREFIX) else ""
    return max(0, int(number) - 1) if number.isdigit() else 0


def face_choices(count: int) -> list[str]:
    return [f"{FACE_CHOICE_PREFIX}{i + 1}" + (" (largest)" if i == 0 else "") for i in range(count)]


def _crop(analysis: Analysis) -> tuple[slice, slice]:
    left, top, right, bottom = face_crop_box(analysis)
    return slice(top, bottom), slice(left, right)


def scratch_file(name: str, payload: bytes, max_age_s: float = 600.0) -> str:
    """Write a download for the visitor into this process's scratch folder (old files are pruned)."""
    folder = _scratch()
    now = time.time()
    for old in folder.glob("*/*"):
        try:  # another request may be pruning the same file right now
            if now - old.stat().st_mtime > max_age_s:
                old.unlink()
                old.parent.rmdir()
        except OSError:
            continue
    target = Path(tempfile.mkdtemp(dir=folder)) / name
    target.write_bytes(payload)
    return str(target)


@lru_cache(maxsize=1)
def _scratch() -> Path:
    """Inside the server's private temporary folder (apps.demo.private_temp_dir), removed at exit."""
    return Path(tempfile.mkdtemp(prefix="glowai-downloads-", dir=os.environ.get("GRADIO_TEMP_DIR")))


# ---------------------------------------------------------------- Analyze


def condition_picture(view: dict | None, shown: list[str]) -> np.ndarray | None:
    """The face crop with every shown condition tinted in its colour, the faint acne spots (counted,
    not marked) ringed, and a legend strip: one JPEG for the page and the API (an AnnotatedImage
    sent a PNG per condition, which cost the client ~0.3 s a call to fetch; bench/bench_demo.py)."""
    if not view:
        return None
    labels, image = view["labels"], view["image"]
    if labels is None:
        return image
    size = image.shape[1::-1]
    display = np.zeros(image.shape[:2], np.uint8)
    for label in CONDITIONS:  # at the displayed size, a pixel of a lesion keeps its display pixel
        if label.title in shown:
            display[cv2.resize((labels == label.index).astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0] = label.index
    out = mask_overlay(image, display, alpha=0.5)
    acne = label_by_name("acne")
    faint = view.get("faint")
    items = [(label.title, label.color) for label in CONDITIONS if label.title in shown]
    if acne.title in shown and faint is not None and len(faint):
        radius = max(3, image.shape[1] // 110)
        for x, y in np.round(faint).astype(int):
            cv2.circle(out, (int(x), int(y)), radius, acne.color, 1, cv2.LINE_AA)
        items.append(("rings: faint acne (counted)", acne.color))
    return with_legend(out, items) if items else out


DISPLAY_SIDE = 560  # the page shows these pictures at most 420 px tall: larger ones only cost encoding and transfer


def _for_display(image: np.ndarray) -> np.ndarray:
    scale = DISPLAY_SIDE / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def score_chart(report: dict):
    """Grouped bars: severity per zone, one colour per condition (plotly figure), or None. The traces
    are plain dicts given to one Figure: add_trace per condition over a pandas groupby cost 40 ms a
    call, plotly.express four times as much again. plotly's validation of those dicts is skipped
    (5-8 ms a call, a quarter of what the Analyze tab adds to the analysis); a test checks that the
    validated figure is the same one."""
    import plotly.graph_objects as go

    zones = [(ZONE_TITLES[zone], values["conditions"]) for zone, values in report["zones"].items() if values["conditions"]]
    if not zones:
        return None
    data = []
    for label in CONDITIONS:
        scores = [conditions[label.name] for _, conditions in zones if label.name in conditions]
        if not scores:
            continue
        data.append({"type": "bar", "x": [title for title, conditions in zones if label.name in conditions],
                     "y": [s["severity"] for s in scores], "name": label.title,
                     "marker": {"color": COLOR_MAP[label.title]},
                     "customdata": [[s["area_pct"], s["lesions"]] for s in scores],
                     "hovertemplate": "%{x}: severity %{y}<br>area %{customdata[0]} %<br>"
                                      "lesions %{customdata[1]}<extra>" + label.title + "</extra>"})
    layout = {"barmode": "group", "height": 320, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
              "legend": {"title": {"text": ""}}, "yaxis": {"range": [0, 100], "title": {"text": "severity (0-100)"}}}
    return go.Figure(data=data, layout=layout, _validate=False)


def guidance_markdown(analysis: Analysis, payload: dict) -> str:
    lines = [f"- {line}" for line in analysis.guidance]
    tone = payload["skin_tone"]
    lines.append(f"- Skin tone (ITA): {tone['ita']:.0f}° ({tone['category']}); lighting changes this reading.")
    if payload["segmentation"]["status"] != "ok":
        lines.insert(0, f"- **{payload['segmentation']['message']}**")
    return "\n".join(lines) + f"\n\n*{payload['disclaimer']}*"


def footer_markdown(analysis: Analysis) -> str:
    steps = " · ".join(f"{k} {v:.0f} ms" for k, v in analysis.timings_ms.items() if k != "total")
    backends = " · ".join(f"{k}: {v}" for k, v in analysis.backends.items())
    mode = "whole frame" if analysis.face_index is None else f"face {analysis.face_index + 1} of {len(analysis.faces)}"
    return f"Analysed in **{analysis.timings_ms['total']:.0f} ms** ({mode}; {steps}). Backends: {backends}."


@gpu
def run_analysis(photo: str | None, choice: str | None, whole_frame: bool, shown: list[str]):
    """Analyze tab: photo path -> masks, zone map, card, chart, guidance, JSON, file, footer, faces, view."""
    photo = _need(photo)
    with friendly_errors():
        analysis = analyzer().analyze(photo, face_index=face_index(choice), whole_frame=bool(whole_frame))
    payload = analysis.to_json()
    rows, cols = _crop(analysis)
    seg = analysis.segmentation
    labels = seg.label_map[rows, cols] if seg else None
    image = _for_display(analysis.image[rows, cols])
    faint = None
    if seg is not None and seg.faint_lesions is not None:  # in the displayed picture's pixels
        faint = (seg.faint_lesions[:, :2] - (cols.start, rows.start)) * (image.shape[1] / (cols.stop - cols.start))
    view = {"image": image, "labels": labels, "faint": faint}
    zones = zone_overlay(analysis.image, analysis.regions)
    report_file = scratch_file("glowai-report.json", json.dumps(payload, indent=2).encode())
    choices = face_choices(max(1, len(analysis.faces)))  # never empty: the next request must name a valid face
    chosen = choices[analysis.face_index or 0]
    faces = gr.Dropdown(choices=choices, value=chosen, visible=len(choices) > 1)
    return (condition_picture(view, shown), _for_display(zones[rows, cols]), report_card(analysis, zones=zones), score_chart(payload),
            guidance_markdown(analysis, payload), payload, report_file, footer_markdown(analysis), faces, view)


def new_photo() -> gr.Dropdown:
    """A new photo starts again from its largest face."""
    return gr.Dropdown(choices=face_choices(1), value=face_choices(1)[0], visible=False)


# ---------------------------------------------------------------- Retouch & makeup


def _cached_analysis(cache: dict | None, photo: str, segment: bool) -> tuple[Analysis, dict]:
    """The last analysis of this visitor's photo, redone only when the photo changes."""
    key = (photo, segment)
    if cache and cache.get("key") == key:
        return cache["analysis"], cache
    with friendly_errors():
        analysis = analyzer().analyze(photo, segment=segment)
    return analysis, {"key": key, "analysis": analysis}


def scaled_preset(preset: Preset, intensities: dict[str, float]) -> Preset:
    """The preset with each region's intensity multiplied by the slider for that region."""
    regions = {name: dataclasses.replace(look, intensity=float(np.clip(look.intensity * intensities.get(name, 1.0), 0, 1)))
               for name, look in preset.regions.items()}
    return Preset(preset.name, regions, preset.credit)


def chosen_preset(source: str, preset_name: str | None, reference: str | None, loaded: dict | None,
                  reference_cache: dict | None) -> tuple[Preset | None, dict | None]:
    """The makeup look the visitor chose (None for no makeup) and the updated reference cache."""
    if source == "Preset":
        presets = builtin_presets()
        if preset_name not in presets:
            raise UserError(f"Choose a preset: {', '.join(presets)}")
        return presets[preset_name], reference_cache
    if source == "Reference photo":
        if not reference:
            raise UserError("upload a reference photo with makeup (its lip, blush and eyeshadow colours are used)")
        ref, reference_cache = _cached_analysis(reference_cache, reference, segment=False)
        return extract_makeup(ref.image, ref.landmarks, ref.regions.skin, name="from reference"), reference_cache
    if source == "Preset file":
        if not loaded:
            raise UserError("load a preset file first (a .json saved by GlowAI)")
        with friendly_errors():
            return Preset.from_json(loaded), reference_cache
    return None, reference_cache


@gpu
def run_filters(photo: str | None, retouch_strength: float, smooth: float, source: str, preset_name: str | None,
                reference: str | None, lips: float, blush: float, eyeshadow: float, loaded: dict | None,
                cache: dict | None, reference_cache: dict | None):
    """Retouch & makeup tab -> (before, after) slider value, status, look as JSON, caches."""
    photo = _need(photo)
    analysis, cache = _cached_analysis(cache, photo, segment=True)
    notes, skipped = [], ""
    try:  # a look that cannot be made yet skips the makeup, not the whole preview
        preset, reference_cache = chosen_preset(source, preset_name, reference, loaded, reference_cache)
    except UserError as err:
        preset, skipped = None, f" Makeup skipped: {err.message}."
    image, skin, landmarks = analysis.image, analysis.regions.skin, analysis.landmarks
    if landmarks is None:
        raise UserError("Filters need a face; this photo was analysed as a close-up.")
    unit = eye_unit(landmarks)
    out = image
    if retouch_strength > 0:
        if analysis.segmentation is None:
            notes.append("no blemish model is installed, so nothing was retouched")
        else:
            classes = [label_by_name(c).index for c in ("acne", "redness")]
            blemishes = np.isin(analysis.segmentation.label_map, classes)
            out = retouch_blemishes(out, blemishes, skin, unit, retouch_strength)
            notes.append(f"retouched {int(blemishes.sum())} blemish pixels")
    if smooth > 0:
        out = smooth_skin(out, skin, landmarks, unit, smooth)
        notes.append(f"smoothed skin ({smooth:.0%})")
    look = None
    if preset is not None:
        look = scaled_preset(preset, {"lips": lips, "blush": blush, "eyeshadow": eyeshadow})
        with friendly_errors():
            out = apply_makeup(out, landmarks, look, skin)
        notes.append(f"makeup '{look.name}': " + ", ".join(f"{k} {v.color} x{v.intensity:.2f}"
                                                          for k, v in look.regions.items()))
    rows, cols = _crop(analysis)
    status = (("Applied: " + "; ".join(notes) + ".") if notes else "Nothing applied: move a slider or pick a look.") + skipped
    return (image[rows, cols], out[rows, cols]), status, look.to_json() if look else None, cache, reference_cache


def save_look(look: dict | None) -> str:
    if not look:
        raise UserError("Apply a makeup look first; then it can be saved as a preset file.")
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(look.get("name", "look")))[:40] or "look"
    return scratch_file(f"glowai-{name}.json", (json.dumps(look, indent=2) + "\n").encode())


def load_look(path: str | None):
    """A preset file uploaded by the visitor -> (preset JSON for the state, makeup source)."""
    if not path:
        return None, gr.update()
    with friendly_errors():
        preset = load_preset(path)
    gr.Info(f"Loaded preset '{preset.name}' ({', '.join(preset.regions)}).")
    return preset.to_json(), "Preset file"


# ---------------------------------------------------------------- Live


class LiveSession:
    """One visitor's webcam stream: a tracking face mesh and the recent frame times."""

    def __init__(self) -> None:
        self.filter = LiveFilter()
        self.times: deque[float] = deque(maxlen=30)
        self.process_ms: deque[float] = deque(maxlen=30)

    def close(self) -> None:
        self.filter.close()


def close_live(session: LiveSession | None) -> None:
    if session is not None:
        session.close()


def live_frame(frame: np.ndarray | None, mode: str, smooth: float, preset_name: str | None,
               session: LiveSession | None):
    """Live tab: one webcam frame -> the filtered frame, the frame rate, the session."""
    if frame is None:
        return None, "Waiting for the camera...", session
    session = session or LiveSession()
    preset = builtin_presets().get(preset_name) if mode == "Smoothing + makeup" else None
    session.filter.options = dataclasses.replace(session.filter.options, smooth=float(smooth), preset=preset)
    start = time.perf_counter()
    out = session.filter.process(np.ascontiguousarray(frame[..., :3]))
    session.process_ms.append((time.perf_counter() - start) * 1000.0)
    session.times.append(start)
    fps = (len(session.times) - 1) / (session.times[-1] - session.times[0]) if len(session.times) > 1 else 0.0
    face = "face tracked" if session.filter.last_landmarks is not None else "no face in view"
    status = (f"**{fps:.1f} frames/s** shown · filter {np.median(session.process_ms):.0f} ms/frame "
              f"(median of {len(session.process_ms)}) · {face}")
    return out, status, session
