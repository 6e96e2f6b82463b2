"""Face detection on real photos: one face, several faces, no face, backends."""

from __future__ import annotations

import numpy as np
import pytest

from core.detection import DetectorOptions, FaceDetector, facexlib_available
from core.errors import BackendUnavailableError


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


def test_portrait_has_one_face_with_keypoints_inside_the_box(detector, portrait):
    faces = detector.detect(portrait)
    assert len(faces) == 1
    face = faces[0]
    assert face.backend == "mediapipe" and face.score > 0.7
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= portrait.shape[1] and 0 <= y0 < y1 <= portrait.shape[0]
    for name in ("right_eye", "left_eye", "nose_tip", "mouth"):
        x, y = face.keypoints[name]
        assert x0 <= x <= x1 and y0 <= y <= y1, name
    # the subject's right eye appears on the left of the image
    assert face.keypoints["right_eye"][0] < face.keypoints["left_eye"][0]


def test_two_faces_are_both_found_largest_first(detector, portrait):
    small = portrait[::2, ::2]
    canvas = np.full((portrait.shape[0], portrait.shape[1] + small.shape[1], 3), 255, np.uint8)
    canvas[:, : portrait.shape[1]] = portrait
    canvas[: small.shape[0], portrait.shape[1]:] = small
    faces = detector.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].box[2] <= portrait.shape[1] + 1 < faces[1].box[0] + 2


def test_no_face_in_noise_or_a_flat_wall(detector):
    for seed in range(5):
        rng = np.random.default_rng(seed)
        assert detector.detect(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) == [], seed
    assert detector.detect(np.full((480, 640, 3), (210, 180, 160), np.uint8)) == []


def test_opencv_cascade_backend_finds_the_portrait(portrait):
    with FaceDetector(DetectorOptions(backend="opencv")) as det:
        faces = det.detect(portrait)
    assert len(faces) >= 1 and faces[0].backend == "opencv-haar"
    with FaceDetector() as mp_det:
        reference = mp_det.detect(portrait)[0]
    from core.detection import box_iou

    assert box_iou(faces[0].box, reference.box) > 0.4


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="mediapipe"):
        FaceDetector(DetectorOptions(backend="dlib"))


def test_facexlib_without_weights_is_a_clear_error(tmp_path):
    options = DetectorOptions(backend="facexlib", facexlib_weights=str(tmp_path / "missing.pth"))
    assert not facexlib_available(options)
    with pytest.raises(BackendUnavailableError, match="no-deps facexlib"):
        FaceDetector(options)


def test_mesh_retries_find_a_three_quarter_face(shared_data):
    """CC0 portrait 012 (three-quarter view, hat, glasses, hard light): the plain crops find no
    landmarks; the padded, rotated retries do, and the mesh sits on the detected face."""
    from core.imageio import load_image
    from core.mesh import FaceMesher, MeshOptions

    image = load_image(shared_data / "faces-cc0" / "012.jpg")
    with FaceDetector() as detector, FaceMesher() as mesher, FaceMesher(MeshOptions(retries=())) as plain:
        face = detector.detect(image)[0]
        assert plain.landmarks(image, face) is None
        landmarks = mesher.landmarks(image, face)
    assert landmarks is not None and landmarks.shape == (478, 3)
    x0, y0, x1, y1 = face.box
    assert x0 - 0.25 * face.width <= landmarks[1, 0] <= x1 and y0 <= landmarks[1, 1] <= y1


def test_a_small_face_far_from_the_camera_is_still_found(detector, portrait):
    """A face under a quarter of the frame's shorter side is the full-range model's job: the
    short-range one alone does not stop the search."""
    small = portrait[::2, ::2]
    canvas = np.full((portrait.shape[0] * 2, portrait.shape[1] * 2, 3), 235, np.uint8)
    canvas[900:900 + small.shape[0], 700:700 + small.shape[1]] = small
    faces = detector.detect(canvas)
    assert len(faces) == 1 and faces[0].width < 0.25 * min(canvas.shape[:2])
    x0, y0, x1, y1 = faces[0].box
    assert 700 <= x0 < x1 <= 700 + small.shape[1] and 900 <= y0 < y1 <= 900 + small.shape[0]


def test_skipping_the_full_range_model_for_a_selfie_changes_no_face(portrait):
    group = np.full((portrait.shape[0], portrait.shape[1] * 2, 3), 255, np.uint8)
    group[:, : portrait.shape[1]] = portrait
    group[: portrait.shape[0] // 2, portrait.shape[1]:][:, : portrait.shape[1] // 2] = portrait[::2, ::2]
    with FaceDetector(DetectorOptions(full_range_below=0.0)) as both, FaceDetector() as gated:
        for image in (portrait, group, np.ascontiguousarray(portrait[::3, ::3])):
            expected, got = both.detect(image), gated.detect(image)
            assert [f.box for f in got] == [f.box for f in expected]
