"""Build core/data/mesh_topology.json: mesh contours, triangles and a canonical frontal face.

Contours and triangles come from mediapipe's FaceMesh connection sets. The canonical face is
the similarity-aligned mean of the landmarks of near-frontal faces among the CC0 portraits
(../shared/data/faces-cc0), used to assign each mesh triangle to a zone once, so zones follow
the face on 3/4 views. Run: .venv/bin/python scripts/build_mesh_topology.py
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from mediapipe.python.solutions import face_mesh_connections as C
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.detection import FaceDetector  # noqa: E402
from core.imageio import load_image  # noqa: E402
from core.mesh import FaceMesher  # noqa: E402


def loops(edges: frozenset) -> list[list[int]]:
    """Ordered vertex cycles (or open chains) of an undirected edge set."""
    adjacency: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        adjacency[a].append(b)
        adjacency[b].append(a)
    seen: set[int] = set()
    result = []
    ends = [v for v, n in adjacency.items() if len(n) == 1]
    for start in ends + sorted(adjacency):
        if start in seen:
            continue
        chain, previous, current = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in adjacency[current] if n != previous and n not in seen]
            if not nxt:
                break
            previous, current = current, nxt[0]
            chain.append(current)
            seen.add(current)
        result.append(chain)
    return result


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def triangles(edges: frozenset) -> list[list[int]]:
    adjacency: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    found = set()
    for a, b in edges:
        for c in adjacency[a] & adjacency[b]:
            found.add(tuple(sorted((a, b, c))))
    return [list(t) for t in sorted(found)]


def align(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Similarity-align 2D `points` to `reference` (Umeyama)."""
    mp, mr = points.mean(0), reference.mean(0)
    p, r = points - mp, reference - mr
    u, s, vt = np.linalg.svd(r.T @ p)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1, d]) @ vt
    scale = (s * [1, d]).sum() / (p**2).sum()
    return (scale * (rot @ p.T)).T + mr


def canonical_face(paths: list[Path]) -> tuple[np.ndarray, int]:
    detector, mesher = FaceDetector(), FaceMesher()
    shapes = []
    for path in tqdm(paths, desc="landmarks"):
        image = load_image(path)
        faces = detector.detect(image)
        if not faces:
            continue
        points = mesher.landmarks(image, faces[0])
        if points is None:
            continue
        xy = points[:468, :2]
        # near-frontal: nose tip (1) halfway between the face sides (234, 454), eyes level
        yaw = (xy[1, 0] - xy[234, 0]) / (xy[454, 0] - xy[234, 0]) - 0.5
        roll = np.degrees(np.arctan2(xy[263, 1] - xy[33, 1], xy[263, 0] - xy[33, 0]))
        if abs(yaw) < 0.04 and abs(roll) < 8:
            shapes.append(xy)
    reference = shapes[0]
    for _ in range(3):
        aligned = np.stack([align(s, reference) for s in shapes])
        reference = aligned.mean(0)
    # normalise: origin between the outer eye corners, unit = outer-corner distance
    origin = (reference[33] + reference[263]) / 2
    unit = np.linalg.norm(reference[263] - reference[33])
    return (reference - origin) / unit, len(shapes)


def main() -> None:
    oval = loops(C.FACEMESH_FACE_OVAL)[0]
    lip_loops = sorted(loops(C.FACEMESH_LIPS), key=len, reverse=True)
    contours = {
        "face_oval": oval,
        "lips_outer": lip_loops[0],
        "lips_inner": lip_loops[1],
        "left_eye": loops(C.FACEMESH_LEFT_EYE)[0],
        "right_eye": loops(C.FACEMESH_RIGHT_EYE)[0],
        # brows are two open chains (upper, lower): join them into one outline
        "left_brow": [i for chain in loops(C.FACEMESH_LEFT_EYEBROW) for i in chain],
        "right_brow": [i for chain in loops(C.FACEMESH_RIGHT_EYEBROW) for i in chain],
        "left_iris": loops(C.FACEMESH_LEFT_IRIS)[0],
        "right_iris": loops(C.FACEMESH_RIGHT_IRIS)[0],
        # outline of the nose tip and alae (the nostrils lie in its lower half)
        "nose_tip": [64, 98, 97, 2, 326, 327, 294, 278, 344, 440, 275, 4, 45, 220, 115, 48],
    }
    paths = sorted((ROOT.parent / "shared" / "data" / "faces-cc0").glob("*.jpg"))
    canonical, used = canonical_face(paths)
    tri = triangles(C.FACEMESH_TESSELATION)
    out = {
        "about": "Built by scripts/build_mesh_topology.py from mediapipe 0.10.14 connection sets; "
        f"canonical = aligned mean of {used} near-frontal CC0 portraits, unit = outer eye-corner distance.",
        "contours": contours,
        "triangles": tri,
        "canonical": np.round(canonical, 4).tolist(),
    }
    target = ROOT / "core" / "data" / "mesh_topology.json"
    target.write_text(json.dumps(out, separators=(",", ":")))
    print(f"wrote {target} ({len(tri)} triangles, canonical from {used} faces)")


if __name__ == "__main__":
    main()
