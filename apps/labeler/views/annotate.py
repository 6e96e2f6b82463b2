"""Annotate: label real photos (condition grades, lesion points) starting from the model's
suggestions; keyboard-driven like Review. Labels are appended to the store, per curator."""

import cv2
import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from apps.labeler.common import curator, photo_folder, store
from core.curation.annotate import (
    CANT_TELL,
    CONDITION_NAMES,
    GRADES,
    default_radius,
    list_photos,
    match_points,
    model_error,
    photo_path,
    suggest,
)
from core.errors import GlowAIError
from core.imageio import load_image
from weights import default_spec, is_installed, specs

VIEW = 760  # displayed width of the photo, px
MARK = {"model": (255, 159, 28), "curator": (0, 200, 255), "selected": (255, 0, 200)}  # RGB
GRADE_OPTIONS = [*range(len(GRADES)), CANT_TELL]
CYCLE_KEYS = ("1", "2", "3", "4")  # one key per condition: cycles its grade

folder = photo_folder()
st.title("Annotate")
if folder is None:
    st.info("No photo folder: start the studio with `glowai labeler --photos DIR` (a folder of real photos, "
            "or an ACNE04-like folder with images/).")
    st.stop()
db, who = store(), curator()
try:
    photos = list_photos(folder)
except GlowAIError as err:
    st.error(str(err))
    st.stop()


@st.cache_resource(show_spinner=False)
def analyzer(model: str):
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions

    return Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=model), require_model=True))


@st.cache_data(show_spinner=False, max_entries=64)
def photo(path: str, mtime: float) -> np.ndarray:
    return load_image(path)  # the decode limits refuse bombs and broken files with a GlowAIError


@st.cache_data(show_spinner=False, max_entries=1024)
def suggestion(path: str, mtime: float, model: str) -> dict:
    return suggest(analyzer(model), photo(path, mtime))


saved = db.photo_labels(who).set_index("photo")
models = [s.name for s in specs().values() if s.task == "blemish-segmentation" and is_installed(s)]
with st.sidebar:
    st.subheader("Photos")
    show = st.radio("Show", ["all", "not labelled by me", "labelled by me"], key="annotate_show")
    listed = [p for p in photos if show == "all" or (p in saved.index) == (show == "labelled by me")]
    preferred = default_spec().name
    model = st.selectbox("Suggestions from", models, index=models.index(preferred) if preferred in models else 0,
                         key="annotate_model", help="the model's lesion points and grades to start from")
    st.caption(f"{len(saved):,} of {len(photos):,} photos labelled by {who}")
if not listed:
    st.info("No photo matches: choose another filter in the sidebar.")
    st.stop()
PICK = f"annotate_pick_{show}"  # one photo choice per filter: a label saved may drop a photo from the list
if st.session_state.get(PICK) not in listed:
    st.session_state[PICK] = listed[min(st.session_state.get("annotate_index", 0), len(listed) - 1)]
name = st.selectbox("Photo", listed, key=PICK)
index = listed.index(name)
st.session_state["annotate_index"] = index


def go(step: int) -> None:
    st.session_state[PICK] = listed[max(0, min(len(listed) - 1, index + step))]


# 1. The photo (a hostile or broken one gets a card, and the curator moves on).
try:
    path = photo_path(folder, name)
    image = photo(str(path), path.stat().st_mtime)
except GlowAIError as err:
    st.error(f"{name} cannot be labelled: {err}")
    left, right = st.columns(2)
    left.button("Previous", shortcut="Left", on_click=go, args=(-1,), key="annotate_prev_bad", width="stretch")
    right.button("Next", shortcut="Right", on_click=go, args=(1,), key="annotate_next_bad", width="stretch")
    st.stop()
with st.spinner(f"{model} looks at the photo..."):
    try:
        proposal = suggestion(str(path), path.stat().st_mtime, model)
    except GlowAIError as err:
        proposal = {"model": model, "points": [], "grades": {}, "message": f"no suggestions: {err}"}

# 2. The working label: the curator's saved one, else the model's suggestion.
def from_model() -> dict:
    return {"points": [[*p, "model"] for p in proposal["points"]], "grades": dict(proposal["grades"]), "note": "",
            "selected": None, "suggestion": {k: proposal[k] for k in ("model", "points", "grades")}}


work_key = f"annotate_work_{name}"
if work_key not in st.session_state:
    if name in saved.index:
        mine = saved.loc[name]
        st.session_state[work_key] = {"points": [[*p, "curator"] for p in mine["points"]], "grades": dict(mine["grades"]),
                                      "note": mine["note"], "suggestion": mine["suggestion"], "selected": None}
    else:
        st.session_state[work_key] = from_model()
work = st.session_state[work_key]
for condition in CONDITION_NAMES:  # the grade controls read their value from the working label
    st.session_state.setdefault(f"annotate_grade_{name}_{condition}", work["grades"].get(condition))


def current_label() -> dict:
    grades = {c: st.session_state.get(f"annotate_grade_{name}_{c}") for c in CONDITION_NAMES}
    return {"grades": {c: g for c, g in grades.items() if g is not None}, "points": [p[:3] for p in work["points"]],
            "note": st.session_state.get(f"annotate_note_{name}", work["note"]), "suggestion": work["suggestion"]}


def save(advance: bool) -> None:
    try:
        db.save_photo_label(name, current_label(), who)
    except GlowAIError as err:
        st.session_state["annotate_error"] = str(err)
        return
    st.session_state.pop(work_key, None)  # read back from the store next time
    st.toast(f"saved {name}: {len(work['points'])} lesions")
    if advance:
        go(1)


def cycle(condition: str) -> None:
    key = f"annotate_grade_{name}_{condition}"
    value = st.session_state.get(key)
    st.session_state[key] = GRADE_OPTIONS[(GRADE_OPTIONS.index(value) + 1) % len(GRADE_OPTIONS)] if value in \
        GRADE_OPTIONS else 0


def reset() -> None:
    st.session_state[work_key] = from_model()
    for condition in CONDITION_NAMES:
        st.session_state[f"annotate_grade_{name}_{condition}"] = proposal["grades"].get(condition)


def grade_word(grade: int | None) -> str:
    return "-" if grade is None else "can't tell" if grade == CANT_TELL else GRADES[grade]


# 3. Clicks: add or remove a point (or move one), on the photo at the chosen zoom.
height, width = image.shape[:2]
picture, side = st.columns([5, 3])
with side:
    mode = st.segmented_control("A click", ["adds / removes", "moves"], default="adds / removes",
                                key="annotate_mode", help="moves: click a point, then where it belongs")
    radius = st.slider("Radius of new points (px of the photo)", 1.0, 40.0, default_radius(image.shape), 0.5,
                       key=f"annotate_radius_{name}")
    zoom = st.segmented_control("Zoom", [1, 2, 4], default=1, format_func=lambda z: f"{z}×", key="annotate_zoom") or 1
centre = st.session_state.setdefault(f"annotate_centre_{name}", [width / 2, height / 2])
crop_w, crop_h = width / zoom, height / zoom
x0 = float(np.clip(centre[0] - crop_w / 2, 0, width - crop_w))
y0 = float(np.clip(centre[1] - crop_h / 2, 0, height - crop_h))


def drawn() -> np.ndarray:
    """The visible part of the photo at VIEW px wide, with every point as a circle."""
    crop = image[round(y0):round(y0 + crop_h), round(x0):round(x0 + crop_w)]
    scale = VIEW / crop.shape[1]
    view = cv2.resize(crop, (VIEW, round(crop.shape[0] * scale)), interpolation=cv2.INTER_AREA if scale < 1
                      else cv2.INTER_LINEAR)
    for k, (x, y, r, origin) in enumerate(work["points"]):
        colour = MARK["selected"] if k == work["selected"] else MARK[origin]
        cv2.circle(view, (round((x - x0) * scale), round((y - y0) * scale)), max(3, round(r * scale)), colour, 2)
    return view


def on_click(x: float, y: float) -> None:
    points = work["points"]
    hit = [k for k, (px, py, pr, _) in enumerate(points) if np.hypot(px - x, py - y) <= max(pr, 4 / zoom)]
    hit = min(hit, key=lambda k: np.hypot(points[k][0] - x, points[k][1] - y)) if hit else None
    if mode == "moves":
        if work["selected"] is None:
            work["selected"] = hit
        else:
            points[work["selected"]][:2] = [round(x, 1), round(y, 1)]
            points[work["selected"]][3] = "curator"
            work["selected"] = None
    elif hit is not None:
        points.pop(hit)
    else:
        points.append([round(x, 1), round(y, 1), radius, "curator"])


with picture:
    click = streamlit_image_coordinates(drawn(), key=f"annotate_click_{name}_{zoom}_{round(x0)}_{round(y0)}")
    seen = st.session_state.setdefault("annotate_seen", set())
    if click and (stamp := (name, click.get("unix_time"))) not in seen:
        seen.add(stamp)
        view_scale = crop_w / click["width"]
        on_click(x0 + click["x"] * view_scale, y0 + click["y"] * view_scale)
        st.rerun()
    st.caption("orange: the model's suggestions · blue: yours · pink: picked to move. Click a point to remove it, "
               "anywhere else to add one.")
with side:
    if zoom > 1:
        overview = cv2.resize(image, (220, round(220 * height / width)), interpolation=cv2.INTER_AREA)
        s = 220 / width
        cv2.rectangle(overview, (round(x0 * s), round(y0 * s)), (round((x0 + crop_w) * s), round((y0 + crop_h) * s)),
                      (255, 255, 255), 2)
        st.caption("Click the overview to move the zoomed view")
        jump = streamlit_image_coordinates(overview, key=f"annotate_overview_{name}_{zoom}")
        if jump and (stamp := (name, "overview", jump.get("unix_time"))) not in seen:
            seen.add(stamp)
            st.session_state[f"annotate_centre_{name}"] = [jump["x"] / s, jump["y"] / s]
            st.rerun()

# 4. Grades, note, actions.
with side:
    st.subheader(f"{name} ({index + 1} of {len(listed)})")
    if proposal.get("message"):
        st.caption(proposal["message"])
    for condition in CONDITION_NAMES:
        suggested = proposal["grades"].get(condition)
        st.segmented_control(
            f"{condition.title()}" + (f" (model: {GRADES[suggested]})" if suggested is not None else ""),
            GRADE_OPTIONS, format_func=grade_word, key=f"annotate_grade_{name}_{condition}",
            required=True)  # a click on the chosen grade keeps it (no silent "not graded")
    for column, key, condition in zip(st.columns(2) * 2, CYCLE_KEYS, CONDITION_NAMES, strict=True):
        column.button(f"next {condition} grade", shortcut=key, key=f"annotate_cycle_{condition}", on_click=cycle, args=(condition,),
                      help=f"key {key}: the next grade for {condition}", width="stretch")
    st.text_area("Note", value=work["note"], key=f"annotate_note_{name}", height=68)
    first, second = st.columns(2)
    first.button("Save and next", shortcut="S", type="primary", on_click=save, args=(True,), key="annotate_save_next",
                 width="stretch")
    second.button("Save", on_click=save, args=(False,), key="annotate_save", width="stretch")
    back, forward = st.columns(2)
    back.button("Previous", shortcut="Left", on_click=go, args=(-1,), key="annotate_prev", width="stretch")
    forward.button("Next", shortcut="Right", on_click=go, args=(1,), key="annotate_next", width="stretch")
    undo, start = st.columns(2)
    undo.button("Undo point", shortcut="Z", key="annotate_undo", width="stretch", disabled=not work["points"],
                on_click=lambda: work["points"].pop())
    start.button("Start over", shortcut="O", on_click=reset, key="annotate_reset", width="stretch",
                 help="back to the model's suggestions (what is saved stays in the log)")
    st.caption("Keys: 1-4 next grade of acne / redness / texture / dryness · S save and next · Z undo point · "
               "O start over · ← → move")
    if "annotate_error" in st.session_state:
        st.error(st.session_state.pop("annotate_error"))
    state = "saved" if name in saved.index else "not saved yet"
    count = len(work["points"])
    st.markdown(f"**{count} lesion point{'' if count == 1 else 's'}** · {state}")

    # 5. How far the curator is from the model on this photo: the model's error here.
    if work["suggestion"] is not None:
        error = model_error(work["suggestion"], current_label())
        st.markdown(f"**Model's error on this photo** ({work['suggestion']['model']}): "
                    f"{error['kept']} suggestions kept, {error['moved']} moved"
                    + (f" (by {error['mean_shift_px']} px on average)" if error["moved"] else "")
                    + f", {error['deleted']} deleted (false finds), {error['added']} added (missed)")
        changed = error["grades_changed"]
        st.caption("grades changed: " + (", ".join(f"{c} {grade_word(m)} → {grade_word(y)}"
                                                   for c, (m, y) in changed.items()) or "none"))
    others = db.photo_labels()
    others = others[(others["photo"] == name) & (others["curator"] != who)]
    for record in others.to_dict("records"):
        matched = len(match_points(record["points"], [p[:3] for p in work["points"]]))
        st.caption(f"{record['curator']}: {len(record['points'])} points ({matched} match yours), grades "
                   + ", ".join(f"{c} {grade_word(g)}" for c, g in record["grades"].items()))
