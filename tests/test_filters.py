"""Beauty filters on real portraits: exact region limits, smoothing, retouch, presets, live mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apps.cli.main import main
from core.errors import GlowAIError
from core.filters import (
    OneEuroFilter,
    Preset,
    apply_makeup,
    builtin_presets,
    extract_makeup,
    load_preset,
    retouch,
    save_preset,
    smooth_skin,
)
from core.filters.makeup import makeup_masks
from core.filters.masks import eye_unit, lips, polygon
from core.mesh import topology
from core.pipeline import AnalyzeOptions, Analyzer

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def faces():
    with Analyzer(AnalyzeOptions(segment=False)) as analyzer:
        return [analyzer.analyze(path) for path in EXAMPLES]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def test_lips_only_changes_nothing_outside_lips_and_feather(faces):
    preset = builtin_presets()["bold lip"]
    for analysis in faces:
        image, landmarks = analysis.image, analysis.landmarks
        out = apply_makeup(image, landmarks, preset, analysis.regions.skin, regions=("lips",))
        changed = (out != image).any(axis=2)
        reach = makeup_masks(image.shape[:2], landmarks, None).reach["lips"]
        allowed = _dilate(lips(image.shape[:2], landmarks), reach + 1)
        assert changed.any() and not (changed & ~allowed).any()
        assert changed[lips(image.shape[:2], landmarks)].mean() > 0.9


@pytest.mark.data
def test_lips_only_on_the_cc0_portraits(shared_data):
    preset = builtin_presets()["berry"]
    paths = sorted((shared_data / "faces-cc0").glob("*.jpg"))[::10]
    with Analyzer(AnalyzeOptions(segment=False)) as analyzer:
        for path in paths:
            try:
                analysis = analyzer.analyze(path)
            except GlowAIError:
                continue
            image, landmarks = analysis.image, analysis.landmarks
            out = apply_makeup(image, landmarks, preset, analysis.regions.skin, regions=("lips",))
            reach = makeup_masks(image.shape[:2], landmarks, None).reach["lips"]
            allowed = _dilate(lips(image.shape[:2], landmarks), reach + 1)
            assert not ((out != image).any(axis=2) & ~allowed).any(), path.name


def test_smoothing_at_full_strength_leaves_eyes_and_lips_alone(faces):
    contours = topology()["contours"]
    for analysis in faces:
        image, landmarks = analysis.image, analysis.landmarks
        out = smooth_skin(image, analysis.regions.skin, landmarks, eye_unit(landmarks), strength=1.0)
        for part in ("left_eye", "right_eye", "lips_outer"):
            region = polygon(image.shape[:2], landmarks[contours[part]])
            assert np.abs(out[region].astype(int) - image[region].astype(int)).max() <= 1, part
        skin = analysis.regions.skin
        assert not (out != image).any(axis=2)[~skin].any()  # hair and background untouched
        # the skin really is smoother: less high-frequency energy
        import cv2

        def energy(img, where):
            grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
            return np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2))[where].mean()

        assert energy(out, skin) < 0.8 * energy(image, skin)


def test_retouch_fills_a_synthetic_blemish_from_surrounding_skin():
    import cv2

    from core.colour import rgb_to_lab
    from synth.dataset import prepare_faces
    from synth.masks import sample_layout
    from synth.procedural import render

    face = prepare_faces(EXAMPLES[0].parent, 384, progress=False)["portrait-001"]
    # Each visible lesion centre should end closer to the clean skin (shading is interpolated, not
    # known). Judged per lesion over eight layouts: on this portrait the skin mask takes a ginger
    # hair lock over the cheek for skin, and a lesion drawn on its edge is filled with hair and skin
    # mixed, a regions limit rather than a retouch one; one layout's median swings from 0.55 to 1.1
    # with where its lesions fall, eight layouts' from 0.74 to 0.86 (a retouch that did nothing: 1).
    ratios = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        sample = render(face, sample_layout(face, {"acne": 3}, rng), rng)
        blemishes = sample.mask > 0
        out = retouch(sample.image, blemishes, face.regions.skin, face.unit, strength=1.0)
        clean_a, spotted_a, fixed_a = (rgb_to_lab(x)[blemishes][:, 1].mean() for x in (face.image, sample.image, out))
        assert abs(fixed_a - clean_a) < 0.4 * abs(spotted_a - clean_a)  # the redness is gone
        error_before = np.abs(sample.image.astype(int) - face.image.astype(int))
        error_after = np.abs(out.astype(int) - face.image.astype(int))
        cores = error_before.max(axis=2) > 12
        count, labels = cv2.connectedComponents(blemishes.astype(np.uint8))
        ratios += [error_after[(labels == k) & cores].mean() / error_before[(labels == k) & cores].mean()
                   for k in range(1, count) if ((labels == k) & cores).sum() >= 5]
        changed = (out != sample.image).any(axis=2)
        assert not (changed & ~face.regions.skin).any()
        assert not (changed & ~_dilate(blemishes, 6)).any()
    assert len(ratios) >= 40
    assert np.median(ratios) < 0.9
    assert np.mean(np.array(ratios) < 1) >= 0.5
    assert np.array_equal(retouch(sample.image, blemishes, face.regions.skin, face.unit, 0.0), sample.image)


def test_extraction_reads_a_known_lip_colour(faces):
    from skimage.color import deltaE_ciede2000

    from core.colour import rgb_to_lab
    from core.filters.makeup import hex_to_lab

    analysis = faces[0]
    painted = apply_makeup(analysis.image, analysis.landmarks, builtin_presets()["bold lip"],
                           analysis.regions.skin, regions=("lips",))
    preset = extract_makeup(painted, analysis.landmarks, analysis.regions.skin)
    lip = lips(painted.shape[:2], analysis.landmarks)
    truth = rgb_to_lab(painted)[lip].mean(axis=0)
    assert deltaE_ciede2000(truth[None], hex_to_lab(preset.regions["lips"].color)[None])[0] < 6
    plain = extract_makeup(analysis.image, analysis.landmarks, analysis.regions.skin)
    assert "lips" in plain.regions and plain.regions["lips"].color != preset.regions["lips"].color


def test_partial_transfer_and_zero_intensity(faces):
    analysis = faces[1]
    image, landmarks = analysis.image, analysis.landmarks
    preset = builtin_presets()["soft glam"]
    blush_only = apply_makeup(image, landmarks, preset, analysis.regions.skin, regions=("blush",))
    lip = lips(image.shape[:2], landmarks)
    assert np.array_equal(blush_only[lip], image[lip]) and (blush_only != image).any()
    assert np.array_equal(apply_makeup(image, landmarks, preset, analysis.regions.skin, intensity=0.0), image)
    with pytest.raises(GlowAIError, match="unknown makeup region"):
        apply_makeup(image, landmarks, preset, regions=("nails",))


def test_presets_round_trip_and_bad_files_are_refused(tmp_path):
    preset = builtin_presets()["natural"]
    path = tmp_path / "look.json"
    save_preset(preset, path)
    again = load_preset(path)
    assert again.to_json() == preset.to_json()
    assert {"natural", "soft glam", "bold lip"} <= set(builtin_presets())
    bad = {"format": "glowai-makeup-preset", "version": 1, "regions": {"lips": {"color": "red"}}}
    for data, match in [({"format": "x"}, "not a GlowAI"), ({**bad, "version": 9}, "version"),
                        (bad, "malformed"), ({**bad, "regions": {"nails": {"color": "#ffffff"}}}, "unknown")]:
        with pytest.raises(GlowAIError, match=match):
            Preset.from_json(data)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(GlowAIError, match="not valid JSON"):
        load_preset(tmp_path / "broken.json")


def test_one_euro_filter_removes_jitter_and_follows_moves():
    rng = np.random.default_rng(0)
    smoother = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    truth = np.zeros((50, 2))
    raw = [truth + rng.normal(0, 1.0, truth.shape) for _ in range(60)]
    smoothed = [smoother(frame, t / 30.0) for t, frame in enumerate(raw)]
    assert np.std(np.array(smoothed[20:])) < 0.5 * np.std(np.array(raw[20:]))
    moving = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    for t in range(30):
        out = moving(np.full((1, 2), 10.0 * t), t / 30.0)
    assert abs(out[0, 0] - 290.0) < 30.0  # lag stays small while moving fast


def test_live_filter_processes_frames_and_skips_frames_without_a_face(faces):
    from core.filters import LiveFilter, LiveOptions

    frame = np.ascontiguousarray(np.asarray(Image.fromarray(faces[0].image).resize((640, 640)))[80:560])
    with LiveFilter(LiveOptions(smooth=0.5, preset=builtin_presets()["natural"])) as live:
        outputs = [live.process(frame, t / 30.0) for t in range(3)]
        assert all(o.shape == frame.shape for o in outputs) and (outputs[-1] != frame).any()
        blank = np.full_like(frame, 40)
        assert np.array_equal(live.process(blank, 1.0), blank)


def test_cli_makeup_and_retouch(tmp_path, capsys):
    photo = EXAMPLES[0]
    assert main(["makeup", "extract", str(EXAMPLES[3]), "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["format"] == "glowai-makeup-preset"
    assert main(["makeup", "apply", str(photo), "--preset", str(tmp_path / "p.json"), "--regions", "lips",
                 "--out", str(tmp_path / "a.png")]) == 0
    mask = np.zeros((800, 800), np.uint8)
    mask[450:470, 330:350] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert main(["retouch", str(photo), "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "r.png")]) == 0
    assert Image.open(tmp_path / "r.png").size == (800, 800)
    capsys.readouterr()
    assert main(["makeup", "apply", str(photo), "--preset", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "built-ins" in capsys.readouterr().err


def test_protected_features_drawn_in_a_window_match_the_whole_frame(faces):
    """protected() draws and dilates eyes, brows and lips only around them; the mask must be the one
    the whole frame gives, also for a face the frame edge cuts (the code it replaced, inline)."""
    import cv2

    from core.filters.masks import protected

    contours = topology()["contours"]

    def whole_frame(shape, landmarks, margin=0.02):
        mask = np.zeros(shape, bool)
        for name in ("left_eye", "right_eye", "lips_outer"):
            mask |= polygon(shape, landmarks[contours[name]])
        for name in ("left_brow", "right_brow"):
            mask |= polygon(shape, cv2.convexHull(landmarks[contours[name], :2].astype(np.float32)).reshape(-1, 2))
        radius = max(1, int(round(margin * eye_unit(landmarks))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)

    for face in faces:
        shape, landmarks = face.image.shape[:2], face.landmarks
        cut = landmarks.copy()
        cut[:, 0] -= np.median(landmarks[:, 0])  # half the face off the left edge
        for points in (landmarks, cut):
            expected = whole_frame(shape, points)
            assert expected.any()
            assert np.array_equal(protected(shape, points), expected)


def test_eyelid_masks_match_the_point_by_point_outline(faces):
    """eyelids() finds the brow edge above every upper-lid point at once; the mask must be the one the
    point-by-point loop drew."""
    from core.filters.masks import eyelids

    contours = topology()["contours"]

    def loop(shape, landmarks, extent):
        mask = np.zeros(shape, bool)
        for eye, brow in (("left_eye", "left_brow"), ("right_eye", "right_brow")):
            eye_pts = landmarks[contours[eye], :2]
            upper = eye_pts[eye_pts[:, 1] <= eye_pts[:, 1].mean()]
            upper = upper[np.argsort(upper[:, 0])]
            brow_pts = landmarks[contours[brow], :2]
            tops = []
            for x, y in upper:
                top_y = brow_pts[np.argsort(np.abs(brow_pts[:, 0] - x))[:3]][:, 1].max()
                tops.append((x, y + (top_y - y) * extent))
            mask |= polygon(shape, np.vstack([upper, np.array(tops)[::-1]]))
        return mask & ~polygon(shape, landmarks[contours["left_eye"]]) & ~polygon(shape, landmarks[contours["right_eye"]])

    for face in faces:
        for extent in (0.3, 0.6, 0.9):
            expected = loop(face.image.shape[:2], face.landmarks, extent)
            assert expected.any()
            assert np.array_equal(eyelids(face.image.shape[:2], face.landmarks, extent), expected)
