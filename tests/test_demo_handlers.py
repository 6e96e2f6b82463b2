"""Demo handlers called in-process (no server): the pieces the tabs are wired to."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import EXAMPLES

gr = pytest.importorskip("gradio")

from apps.demo import generate as gen  # noqa: E402
from apps.demo import handlers as h  # noqa: E402


def test_face_choice_round_trip():
    choices = h.face_choices(3)
    assert choices[0] == "Face 1 (largest)"
    assert [h.face_index(c) for c in choices] == [0, 1, 2]
    assert h.face_index(None) == 0 and h.face_index("Face x") == 0 and h.face_index("Face ") == 0


def test_user_errors_are_escaped_and_not_logged():
    err = h.UserError("<img src=x onerror=alert(1)>.jpg: not a supported image file")
    assert "<img" not in err.message and "&lt;img" in err.message
    assert err.print_exception is False


def test_analyzer_overrides_per_call(portrait_path):
    analyzer = h.analyzer()
    face = analyzer.analyze(portrait_path, segment=False)
    assert face.face_index == 0 and face.segmentation is None and face.backends["segment"] == "skipped"
    wall = np.full((300, 400, 3), 170, np.uint8)
    with pytest.raises(h.NoFaceError):
        analyzer.analyze(wall)
    assert analyzer.analyze(wall, whole_frame=True).face_index is None
    with pytest.raises(h.FaceIndexError):
        analyzer.analyze(portrait_path, face_index=3, segment=False)


def test_scaled_preset_multiplies_and_clips():
    preset = h.builtin_presets()["natural"]
    scaled = h.scaled_preset(preset, {"lips": 0.0, "blush": 2.0})
    assert scaled.regions["lips"].intensity == 0.0
    assert scaled.regions["blush"].intensity == min(1.0, preset.regions["blush"].intensity * 2)
    assert scaled.regions["eyeshadow"].intensity == preset.regions["eyeshadow"].intensity
    assert preset.regions["lips"].intensity > 0  # the built-in preset itself is untouched


def test_filters_skip_only_the_makeup_that_cannot_be_made():
    photo = str(EXAMPLES / "portrait-006.jpg")
    (before, after), status, look, cache, _ = h.run_filters(photo, 0.0, 0.5, "Reference photo", None, None,
                                                             1, 1, 1, None, None, None)
    assert "Makeup skipped: upload a reference photo" in status and "smoothed skin" in status and look is None
    assert np.abs(before.astype(int) - after.astype(int)).max() > 0
    again = h.run_filters(photo, 0.0, 0.0, "Preset", "natural", None, 1, 1, 1, None, cache, None)
    assert again[3] is cache  # same photo: the analysis is reused, not redone


def test_live_frames_track_a_face_and_report_a_rate(portrait):
    session, frames = None, []
    for _ in range(4):
        out, status, session = h.live_frame(portrait, "Smoothing + makeup", 0.6, "natural", session)
        frames.append(out)
    try:
        assert "face tracked" in status and "frames/s" in status
        assert frames[-1].shape == portrait.shape and np.abs(frames[-1].astype(int) - portrait.astype(int)).max() > 5
    finally:
        h.close_live(session)


@pytest.fixture(scope="module")
def source_face():
    _, face, message = gen.prepare_face(str(EXAMPLES / "portrait-028.jpg"))
    assert "Face ready" in message
    return face


def test_generate_from_a_painted_mask_stays_inside_it(source_face):
    painted = np.zeros((*source_face.image.shape[:2], 4), np.uint8)
    ys, xs = np.nonzero(source_face.regions.skin)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    painted[cy - 60:cy + 60, cx - 120:cx - 20, 3] = 255  # a block on one cheek
    editor = {"background": source_face.image, "layers": [painted], "composite": source_face.image}
    (clean, image), (_, masks), rows, status = gen.run_generate(source_face, gen.MASK_MODES[1], [], 2, "Redness",
                                                               editor, None, 5)
    assert "procedural" in status and [title for _, title in masks] == ["Redness"]
    mask = masks[0][0] > 0
    assert mask.any() and not (mask & (painted[..., 3] == 0)).any()  # nothing outside the painted block
    assert dict(rows)["pixels changed outside the mask"] == "0"


def test_generate_without_a_painted_stroke_says_what_to_do(source_face):
    editor = {"background": source_face.image, "layers": [], "composite": source_face.image}
    with pytest.raises(h.UserError, match="Paint over the skin"):
        gen.run_generate(source_face, gen.MASK_MODES[1], [], 2, "Acne", editor, None, 0)
    with pytest.raises(h.UserError, match="Upload a clean face"):
        gen.run_generate(None, gen.MASK_MODES[0], ["Acne"], 2, "Acne", None, None, 0)


def test_about_tab_states_the_default_models_licence():
    from apps.demo.ui import about_markdown
    from weights import default_spec, get_spec

    about = about_markdown()
    spec = default_spec()
    assert f"**{spec.name}**, licence: **{spec.license}**" in about
    if spec.lesion_head:  # weights learned from ACNE04 carry its research-only terms, and say so
        assert "research" in spec.license and "ACNE04" in about
        assert "glowai-unet-small" in about and get_spec("glowai-unet-small").license == "Apache-2.0"


def test_condition_picture_tints_only_the_shown_conditions_and_rings_faint_spots():
    from core.labels import label_by_name

    image = np.full((120, 100, 3), 128, np.uint8)
    labels = np.zeros((240, 200), np.uint8)  # the crop's label map at twice the displayed size
    acne, redness = label_by_name("acne"), label_by_name("redness")
    labels[20:40, 20:40] = acne.index
    labels[100:140, 100:160] = redness.index
    labels[201, 151] = acne.index  # a one-pixel lesion survives the downscale
    view = {"image": image, "labels": labels, "faint": np.array([[80.0, 20.0]])}
    both = h.condition_picture(view, ["Acne", "Redness"])
    assert both.shape[1] == 100 and both.shape[0] > 120  # the picture, then the legend strip
    picture = both[:120].astype(int)
    assert (picture[15, 15] != 128).any() and (picture[60, 65] != 128).any() and (picture[100, 75] != 128).any()
    assert (picture[5, 5] == 128).all() and (picture[90, 20] == 128).all()  # untouched where nothing is
    ring = picture[14:27, 74:87]
    assert (ring != 128).any(axis=2).sum() > 10 and (picture[20, 80] == 128).all()  # a ring, hollow
    only_redness = h.condition_picture(view, ["Redness"])[:120].astype(int)
    assert (only_redness[15, 15] == 128).all() and (only_redness[14:27, 74:87] == 128).all()
    assert (only_redness[60, 65] != 128).any()
    assert h.condition_picture(view, [])[:120].shape == (120, 100, 3)
    assert h.condition_picture(None, ["Acne"]) is None


def test_score_chart_has_a_bar_per_zone_for_each_condition(portrait_path):
    report = h.analyzer().analyze(portrait_path).to_json()
    figure = h.score_chart(report)
    assert [trace.name for trace in figure.data] == h.CONDITION_TITLES
    acne = figure.data[0]
    assert list(acne.x) == [h.ZONE_TITLES[zone] for zone in report["zones"]]
    assert list(acne.y) == [values["conditions"]["acne"]["severity"] for values in report["zones"].values()]
    assert acne.marker.color == h.COLOR_MAP["Acne"]
    assert h.score_chart({"zones": {"forehead": {"conditions": None}}}) is None
    # built without plotly's validation: the validated figure of the same dicts is the same figure
    import plotly.graph_objects as go

    plain = figure.to_plotly_json()
    assert go.Figure(data=plain["data"], layout=plain["layout"]).to_plotly_json() == plain
