"""Share of the ACNE04 expert lesion centres that lie on the skin GlowAI analyses.

Every photo is analysed as `core.model.evaluate.acne_analyses` does (face mode, whole-frame mode
when no face or no landmarks are found), without the blemish model. Prints the share overall, per
mode (face / whole_frame) and per grade (file prefix levle0..3), and how many photos went whole-frame.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/skin_coverage.py --json /tmp/coverage.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import NoFaceError  # noqa: E402
from core.model.evaluate import _lesions, grade_of  # noqa: E402
from core.pipeline import AnalyzeOptions, Analyzer  # noqa: E402


def coverage(data: Path, limit: int | None = None) -> dict:
    """Per-photo and summed lesion-centre counts on the skin mask for the ACNE04 subset in `data`."""
    circles = _lesions(data)
    paths = sorted((data / "images").glob("*.jpg"))[:limit]
    face_analyzer = Analyzer(AnalyzeOptions(segment=False))
    frame_analyzer = Analyzer(AnalyzeOptions(segment=False, whole_frame=True, detector=face_analyzer.options.detector))
    photos = []
    try:
        for path in paths:
            try:
                analysis = face_analyzer.analyze(path)
            except NoFaceError:
                analysis = frame_analyzer.analyze(path)
            skin = analysis.regions.skin
            height, width = skin.shape
            on = 0
            lesions = circles.get(path.name, [])
            for x, y, _ in lesions:
                col = min(width - 1, max(0, int(round(x * analysis.scale))))
                row = min(height - 1, max(0, int(round(y * analysis.scale))))
                on += bool(skin[row, col])
            photos.append({"name": path.name, "mode": "face" if analysis.face_index is not None else "whole_frame",
                           "grade": grade_of(path.name), "lesions": len(lesions), "on_skin": on,
                           "skin_share": round(float(skin.mean()), 4),
                           "landmarks_ms": round(analysis.timings_ms.get("landmarks", 0.0), 1),
                           "regions_ms": round(analysis.timings_ms.get("regions", 0.0), 1)})
    finally:
        face_analyzer.close()
        frame_analyzer.close()
    return {"photos": photos, "summary": summarise(photos)}


def summarise(photos: list[dict]) -> dict:
    """Lesion-centre share on skin overall, per mode and per grade; whole-frame photo count."""
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # on skin, lesions, photos
    for photo in photos:
        for key in ("overall", f"mode={photo['mode']}", f"grade={photo['grade']}"):
            groups[key][0] += photo["on_skin"]
            groups[key][1] += photo["lesions"]
            groups[key][2] += 1
    summary = {key: {"on_skin": on, "lesions": total, "photos": count,
                     "share": round(on / total, 4) if total else None}
               for key, (on, total, count) in sorted(groups.items())}
    summary["whole_frame_photos"] = sum(p["mode"] == "whole_frame" for p in photos)
    for step in ("landmarks_ms", "regions_ms"):
        values = [p[step] for p in photos if p["mode"] == "face"]
        summary[f"{step}_p50_face"] = round(statistics.median(values), 1) if values else None
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/acne04-dev"))
    parser.add_argument("--json", type=Path, help="write per-photo counts and the summary here")
    parser.add_argument("--limit", type=int, help="only the first N photos (quick checks)")
    args = parser.parse_args()
    result = coverage(args.data, args.limit)
    summary = result["summary"]
    for key, row in summary.items():
        if isinstance(row, dict):
            share = f"{100 * row['share']:.1f} %" if row["share"] is not None else "-"
            print(f"{key:18s} {share:>8s}  ({row['on_skin']} of {row['lesions']} centres, {row['photos']} photos)")
        else:
            print(f"{key:18s} {row}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
