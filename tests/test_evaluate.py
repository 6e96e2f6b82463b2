"""Evaluation commands on small folders built here, and on the reference data when present."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.detection import FaceDetector
from core.evaluate import eval_regions
from core.mesh import FaceMesher
from core.regions import face_regions


def test_eval_regions_scores_a_perfect_and_a_missed_mask(tmp_path, portrait, portrait_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with FaceDetector() as detector, FaceMesher() as mesher:
        skin = face_regions(portrait, mesher.landmarks(portrait, detector.detect(portrait)[0])).skin
    Image.fromarray(portrait).save(tmp_path / "images" / "a.png")
    # ground truth in CelebAMask-HQ ids at half resolution: 1 skin, 2 nose, 13 hair; halved with
    # the same nearest-neighbour resize the evaluation applies to its own mask, so a = 1.0 exactly
    half = (skin.shape[1] // 2, skin.shape[0] // 2)
    truth = np.where(np.asarray(Image.fromarray(skin).resize(half, Image.NEAREST)), 1, 13).astype(np.uint8)
    Image.fromarray(truth).save(tmp_path / "masks" / "a.png")
    Image.new("RGB", (256, 256), (60, 60, 60)).save(tmp_path / "images" / "b.png")
    Image.fromarray(np.ones((256, 256), np.uint8)).save(tmp_path / "masks" / "b.png")
    result = eval_regions(tmp_path, progress=False)
    assert result["per_image"]["a.png"] == 1.0
    assert result["per_image"]["b.png"] == 0.0 and result["missed"] == ["b.png"]
    assert result["mean_iou"] == pytest.approx(np.mean(list(result["per_image"].values())), abs=1e-3)


@pytest.mark.data
def test_regions_on_a_few_celebamask_faces(shared_data, tmp_path):
    source = shared_data / "celebamask-dev"
    names = sorted(p.stem for p in (source / "images").glob("*.jpg"))[:12]
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for name in names:
        (tmp_path / "images" / f"{name}.jpg").symlink_to(source / "images" / f"{name}.jpg")
        (tmp_path / "masks" / f"{name}.png").symlink_to(source / "masks" / f"{name}.png")
    result = eval_regions(tmp_path, progress=False)
    assert result["mean_iou"] > 0.7 and result["median_iou"] > 0.75
