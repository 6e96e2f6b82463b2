"""Face regions: the skin mask leaves out eyes, brows, lips; zones sit where they belong."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.detection import FaceDetector
from core.mesh import FaceMesher, topology
from core.regions import ZONES, FaceRegions, RegionOptions, face_regions, triangle_zones, whole_frame_regions


@pytest.fixture(scope="module")
def mesh_tools():
    with FaceDetector() as detector, FaceMesher() as mesher:
        yield detector, mesher


def _landmarks(mesh_tools, image):
    detector, mesher = mesh_tools
    return mesher.landmarks(image, detector.detect(image)[0])


def test_mesh_has_478_landmarks_in_image_pixels(mesh_tools, portrait):
    landmarks = _landmarks(mesh_tools, portrait)
    assert landmarks.shape == (478, 3)
    face = mesh_tools[0].detect(portrait)[0]
    nose = landmarks[1, :2]
    assert face.box[0] < nose[0] < face.box[2] and face.box[1] < nose[1] < face.box[3]


def test_skin_excludes_eyes_brows_lips_and_covers_cheeks(mesh_tools, portrait):
    landmarks = _landmarks(mesh_tools, portrait)
    regions = face_regions(portrait, landmarks)
    contours = topology()["contours"]

    def inside(indices):
        pts = landmarks[indices, :2].mean(axis=0).round().astype(int)
        return regions.skin[pts[1], pts[0]]

    for part in ("left_iris", "right_iris", "left_brow", "right_brow"):
        assert not inside(contours[part]), part
    assert not regions.skin[tuple(landmarks[13, 1::-1].round().astype(int))]  # inner upper lip
    assert regions.skin[tuple(landmarks[205, 1::-1].round().astype(int))]  # right cheek
    assert regions.skin[tuple(landmarks[425, 1::-1].round().astype(int))]  # left cheek
    area = regions.skin.sum()
    face = mesh_tools[0].detect(portrait)[0]
    assert 0.3 * face.area < area < 1.5 * face.area
    assert not (regions.skin & regions.parts["eyes"]).any()


def test_every_zone_is_present_and_on_its_side(mesh_tools, portrait):
    landmarks = _landmarks(mesh_tools, portrait)
    regions = face_regions(portrait, landmarks)
    assert regions.zone_names == ZONES
    centres = {}
    for name in ZONES:
        ys, xs = np.nonzero(regions.zone_mask(name))
        assert len(xs) > 500, name
        centres[name] = (xs.mean(), ys.mean())
    assert centres["right_cheek"][0] < centres["nose"][0] < centres["left_cheek"][0]  # subject's sides
    assert centres["forehead"][1] < centres["nose"][1] < centres["chin"][1]
    assert ((regions.zone_map > 0) == regions.skin).all()


def test_zones_follow_a_mirrored_face(mesh_tools, portrait):
    mirrored = np.ascontiguousarray(portrait[:, ::-1])
    regions = face_regions(mirrored, _landmarks(mesh_tools, mirrored))
    left = np.nonzero(regions.zone_mask("left_cheek"))[1].mean()
    right = np.nonzero(regions.zone_mask("right_cheek"))[1].mean()
    assert right < left  # still the subject's own sides


def test_triangle_zone_table_uses_every_zone():
    zones = triangle_zones()
    assert len(zones) == len(topology()["triangles"])
    assert set(np.unique(zones)) == set(range(1, len(ZONES) + 1))


def test_whole_frame_mode_keeps_skin_and_drops_a_dark_background():
    rng = np.random.default_rng(0)
    image = np.zeros((200, 200, 3), np.uint8)
    image[:] = (30, 30, 35)
    image[20:180, 20:180] = np.clip(np.array([200, 150, 130]) + rng.normal(0, 4, (160, 160, 3)), 0, 255)
    regions = whole_frame_regions(image)
    assert regions.zone_names == ("whole_frame",)
    assert regions.skin[30:170, 30:170].mean() > 0.95
    assert regions.skin[:10].mean() < 0.05


def _eye_rings(landmarks, shape, radius):
    import cv2

    contours = topology()["contours"]
    unit = float(np.linalg.norm(landmarks[263, :2] - landmarks[33, :2]))
    rings = []
    for name in ("left_eye", "right_eye"):
        eye = np.zeros(shape, np.uint8)
        cv2.fillPoly(eye, [landmarks[contours[name], :2].round().astype(np.int32)], 1)
        grown = cv2.dilate(eye, np.ones((3, 3), np.uint8), iterations=int(radius * unit))
        rings.append(grown.astype(bool) & ~eye.astype(bool))
    return rings


def test_dark_circles_under_the_eyes_stay_skin(mesh_tools, portrait):
    """Shadows and eyeshadow around the eyes are skin: a purple-brown ring painted there must
    not be cut out by the colour model (it is, with the eye ring switched off)."""
    from core.regions import RegionOptions

    landmarks = _landmarks(mesh_tools, portrait)
    shaded = portrait.copy()
    rings = _eye_rings(landmarks, portrait.shape[:2], 0.1)
    below = np.arange(portrait.shape[0])[:, None] > landmarks[[33, 263], 1].max()  # under the eyes only
    ring = (rings[0] | rings[1]) & below
    shaded[ring] = (0.4 * shaded[ring] + 0.6 * np.array([95, 60, 120])).astype(np.uint8)  # violet shadow
    with_ring = face_regions(shaded, landmarks).skin
    without = face_regions(shaded, landmarks, RegionOptions(eye_ring=0)).skin
    assert with_ring[ring].mean() > 0.8
    assert without[ring].mean() < with_ring[ring].mean() - 0.2


def test_sunglasses_are_not_skin(mesh_tools, portrait):
    """Near-black lenses over both eyes: the eye ring must not turn the lens into skin."""
    landmarks = _landmarks(mesh_tools, portrait)
    masked = portrait.copy()
    lenses = np.zeros(portrait.shape[:2], bool)
    for ring in _eye_rings(landmarks, portrait.shape[:2], 0.12):
        lenses |= ring
    masked[lenses] = 18
    regions = face_regions(masked, landmarks)
    assert regions.skin[lenses].mean() < 0.1


def test_frontal_portrait_keeps_the_mesh_envelope(mesh_tools, portrait):
    from core.profile import profile_weight, widen_for_profile, yaw_degrees
    from core.regions import RegionOptions

    landmarks = _landmarks(mesh_tools, portrait)
    assert abs(yaw_degrees(landmarks)) < 20
    assert profile_weight(landmarks, RegionOptions().profile) == 0.0
    oval = landmarks[topology()["contours"]["face_oval"], :2].astype(np.float64)
    assert widen_for_profile(oval, landmarks) is oval


def test_side_view_skin_reaches_the_jaw_and_far_cheek(mesh_tools, shared_data):
    """ACNE04 side view: the profile envelope puts more expert lesion centres on skin than the
    mesh oval alone, and the dark background at the frame edges stays out."""
    from core.imageio import load_image
    from core.model.evaluate import _lesions
    from core.profile import ProfileOptions, yaw_degrees
    from core.regions import RegionOptions

    data = shared_data / "acne04-dev"
    image = load_image(data / "images" / "levle2_110.jpg")
    landmarks = _landmarks(mesh_tools, image)
    assert abs(yaw_degrees(landmarks)) > 30
    frontal = RegionOptions(profile=ProfileOptions(yaw_start=90.0, yaw_full=91.0))
    centres = [(round(y), round(x)) for x, y, _ in _lesions(data)["levle2_110.jpg"]]

    def on_skin(skin):
        return sum(bool(skin[min(y, skin.shape[0] - 1), min(x, skin.shape[1] - 1)]) for y, x in centres)

    wide, narrow = face_regions(image, landmarks).skin, face_regions(image, landmarks, frontal).skin
    assert on_skin(wide) >= on_skin(narrow) + 0.1 * len(centres)
    assert on_skin(wide) >= 0.85 * len(centres)
    assert wide[:, :40].mean() < 0.1 and wide[-40:, :200].mean() < 0.1  # background left and bottom-left


def test_masks_worked_out_at_a_smaller_scale_match_the_full_resolution_ones(mesh_tools, portrait):
    landmarks = _landmarks(mesh_tools, portrait)
    unit = float(np.linalg.norm(landmarks[263, :2] - landmarks[33, :2]))
    full = face_regions(portrait, landmarks, RegionOptions(work_unit=0))
    small = face_regions(portrait, landmarks, RegionOptions(work_unit=unit / 2))  # half the resolution
    assert small.skin.shape == full.skin.shape
    iou = (small.skin & full.skin).sum() / (small.skin | full.skin).sum()
    assert 0.95 < iou < 1.0  # the same mask: its edge moves by a pixel or two, a few colour calls change
    for mask in small.parts.values():
        assert not (small.skin & mask).any()
    assert ((small.zone_map > 0) == small.skin).all()
    same = (small.zone_map == full.zone_map)[small.skin & full.skin].mean()
    assert same > 0.97
    assert abs(small.skin_lab_median[0] - full.skin_lab_median[0]) < 1.5
    for work_unit in (unit * 1.01, unit / 1.2):  # a smaller face, or one barely larger: full resolution
        unchanged = face_regions(portrait, landmarks, RegionOptions(work_unit=work_unit))
        assert (unchanged.skin == full.skin).all() and (unchanged.zone_map == full.zone_map).all()


def test_skin_colour_fit_matches_the_masked_covariance_it_replaced():
    from core.skin_colour import fit_skin_colour

    rng = np.random.default_rng(5)
    samples = np.column_stack([rng.normal(60, 10, 9000), rng.normal(15, 4, 9000),
                               rng.normal(18, 5, 9000) + rng.normal(0, 3, 9000)]).astype(np.float32)
    samples[:500, 1:] += 25  # outliers that the trimming passes drop
    ab = samples[:, 1:].astype(np.float64)
    keep = np.ones(len(ab), bool)
    for _ in range(2):
        mean = ab[keep].mean(0)
        inv = np.linalg.inv(np.cov(ab[keep].T) + np.eye(2))
        d = ab - mean
        d2 = np.einsum("ni,ij,nj->n", d, inv, d)
        keep = d2 <= np.quantile(d2, 0.9)
    expected_inv = np.linalg.inv(np.cov(ab[keep].T) * 1.5 + np.eye(2) * 2.0)
    mean, inv, lightness = fit_skin_colour(samples)
    np.testing.assert_allclose(mean, ab[keep].mean(0), rtol=1e-9)
    np.testing.assert_allclose(inv, expected_inv, rtol=1e-9)
    assert lightness == pytest.approx(float(np.median(samples[:, 0])))


def test_unzoned_skin_rim_takes_the_nearest_zone():
    from core.regions import _fill_nearest, _grow_zones

    zone_map = np.zeros((60, 80), np.uint8)
    zone_map[10:50, 10:40] = 1
    zone_map[10:50, 40:70] = 2
    skin = np.zeros_like(zone_map, bool)
    skin[6:54, 5:76] = True  # a rim of 4-6 px around the zoned block
    skin[30, 0:5] = True  # and a strand that needs more than the 3x3 steps
    grown = _grow_zones(zone_map.copy(), skin, steps=3)
    assert (grown[skin] > 0).all() and not grown[~skin].any()
    nearest = _fill_nearest(zone_map, skin)
    away_from_the_border = np.abs(np.arange(80) - 40)[None, :].repeat(60, 0) > 6
    assert np.array_equal(grown[skin & away_from_the_border], nearest[skin & away_from_the_border])


def _other_threads_cpu_s() -> float:
    """CPU seconds used so far by this process's threads other than the calling one (Linux /proc)."""
    import os
    import threading

    me, total = threading.get_native_id(), 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/task"), reason="reads per-thread CPU time from /proc")
def test_the_skin_colour_fit_leaves_no_thread_spinning_after_it():
    """A float64 `@` over ~40k face pixels went to OpenBLAS, whose worker then busy-waited for about
    0.1 s and took a core from the model step that follows (1.5x slower on 2 cores). The fit must
    leave the other threads as idle as they were before it."""
    import time

    from core.skin_colour import fit_skin_colour

    rng = np.random.default_rng(1)
    samples = np.column_stack([rng.normal(60, 10, 40_000), rng.normal(15, 4, 40_000),
                               rng.normal(18, 5, 40_000)]).astype(np.float32)
    extra = []
    for _ in range(3):  # the least of three: another library's thread may wake in one window
        before = _other_threads_cpu_s()
        time.sleep(0.15)
        idle = _other_threads_cpu_s() - before
        before = _other_threads_cpu_s()
        fit_skin_colour(samples)
        time.sleep(0.15)
        extra.append(_other_threads_cpu_s() - before - idle)
    assert min(extra) < 0.05, f"other threads used {min(extra) * 1000:.0f} ms of CPU after the fit"


def test_landmarks_read_from_wire_bytes_equal_the_attribute_by_attribute_read(mesh_tools, portrait):
    """normalized_points() reads mediapipe's landmark list from its serialised bytes; every value must
    be the one the attributes give, and a list laid out otherwise (visibility set) still reads right."""
    from core.mesh import normalized_points
    from core.native import import_mediapipe

    mp = import_mediapipe()
    detector, mesher = mesh_tools
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        result = mesh.process(portrait)
    landmarks = result.multi_face_landmarks[0]
    expected = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], np.float32)
    assert expected.shape == (478, 3)
    assert np.array_equal(normalized_points(landmarks), expected)
    landmarks.landmark[7].visibility = 0.5  # one record longer: the byte layout no longer fits
    assert np.array_equal(normalized_points(landmarks), expected)
    assert normalized_points(type(landmarks)()).shape == (0, 3)


def test_zone_names_sit_inside_their_zones_and_slivers_get_none():
    """A cheek seen from the side curves round: its median pixel lies outside it. The name must
    go on the zone itself; a sliver (1 % of the skin) gets no name."""
    from core.overlays import zone_label_points, zone_overlay

    zone_map = np.zeros((200, 200), np.uint8)
    zone_map[20:180, 20:50] = 1
    zone_map[20:140, 60:180] = 2   # a block
    zone_map[10:13, 60:120] = 3    # a sliver: 180 px of ~19,000
    ring = np.zeros_like(zone_map)
    cv2.circle(ring, (100, 100), 60, 1, 12)
    regions = FaceRegions(zone_map > 0, zone_map, ("forehead", "nose", "chin"))
    points = zone_label_points(regions)
    assert set(points) == {"forehead", "nose"}
    for name, (x, y) in points.items():
        assert regions.zone_mask(name)[int(y), int(x)], name
    ring_regions = FaceRegions(ring > 0, ring, ("forehead",))  # the ring's median is its empty centre
    (x, y), = zone_label_points(ring_regions).values()
    assert ring[int(y), int(x)] == 1
    picture = zone_overlay(np.full((200, 200, 3), 128, np.uint8), regions)
    assert picture.shape == (200, 200, 3) and not np.array_equal(picture[90, 120], picture[5, 5])


def test_zone_borders_are_smoothed_without_steps():
    """Zone borders are smoothed on a quarter-resolution vote; the vote is interpolated back before
    it is taken, so a straight border stays within a pixel of itself instead of 4-pixel steps."""
    from core.regions import _smooth_zones

    rows, cols = np.mgrid[:200, :240]
    border = 0.37 * cols[0] + 40.3  # zone 1 above this line, zone 2 below
    zone_map = np.where(rows < border[None, :], 1, 2).astype(np.uint8)
    zone_map[:, :4] = 0  # not skin: stays 0
    smooth = _smooth_zones(zone_map, sigma=8.0)
    assert (smooth[:, :4] == 0).all() and set(np.unique(smooth[:, 4:])) == {1, 2}
    rows_of_zone_1 = (smooth == 1).sum(axis=0)[16:-16]
    assert np.abs(rows_of_zone_1 - border[16:-16]).max() <= 1.5


def test_a_forehead_browner_than_the_cheeks_stays_skin(mesh_tools):
    """portrait-057's upper forehead is browner than her cheeks and nose, which the colour model is
    fitted on; above the mesh oval the model is stricter (hair), and at colour distance 3 it cut
    away more than half of the envelope above the brows (0.46 kept; 0.63 at 4)."""
    from core.imageio import load_image
    from tests.conftest import EXAMPLES

    image = load_image(EXAMPLES / "portrait-057.jpg")
    landmarks = _landmarks(mesh_tools, image)
    contours = topology()["contours"]
    brow_top = int(landmarks[contours["left_brow"] + contours["right_brow"], 1].min())
    envelope = face_regions(image, landmarks, RegionOptions(use_colour_model=False)).skin[:brow_top].sum()
    kept = face_regions(image, landmarks).skin[:brow_top].sum()
    assert kept >= 0.55 * envelope
