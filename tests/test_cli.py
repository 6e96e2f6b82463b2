"""The glowai command line, driven as a user would: real photos, real files, exit codes, stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apps.cli.main import main
from tests.hostile import encode, hostile_corpus
from weights import default_spec

ROOT = Path(__file__).resolve().parents[1]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_writes_json_overlay_and_card(tmp_path, portrait_path, capsys):
    code, out, err = run(["analyze", portrait_path, "--json", tmp_path / "r.json", "--overlay",
                          tmp_path / "o.png", "--card", tmp_path / "c.png"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["zones"]) == {"forehead", "left_cheek", "right_cheek", "nose", "chin"}
    assert report["skin_tone"]["category"] and report["quality"] and report["guidance"]
    assert report["timings_ms"]["total"] > 0 and report["backends"]["detect"] == "mediapipe"
    card = np.asarray(Image.open(tmp_path / "c.png"))
    assert card.shape[1] == 1280 and card.std() > 20  # a real picture, not a blank
    assert Image.open(tmp_path / "o.png").size[0] >= 800
    assert "portrait-001.jpg" in out and not list(tmp_path.glob("*.tmp"))


def test_several_photos_fill_a_folder_and_bad_ones_exit_2(tmp_path, portrait_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    code, out, err = run(["analyze", portrait_path, bad, "--json", tmp_path / "reports", "--quiet"], capsys)
    assert code == 2
    assert (tmp_path / "reports" / "portrait-001.json").is_file()
    assert err.strip().count("\n") == 0 and "broken.jpg" in err and "Traceback" not in err


def test_face_index_and_no_face(tmp_path, portrait_path, capsys):
    code, _, err = run(["analyze", portrait_path, "--face", "3"], capsys)
    assert code == 2 and "has 1 face" in err
    wall = tmp_path / "wall.png"
    Image.new("RGB", (400, 300), (120, 130, 140)).save(wall)
    code, _, err = run(["analyze", wall], capsys)
    assert code == 2 and "no face was found" in err and "--whole-frame" in err


def test_whole_frame_analyses_a_skin_close_up(tmp_path, portrait, capsys):
    close_up = tmp_path / "cheek.png"
    Image.fromarray(portrait[420:560, 300:440]).resize((280, 280)).save(close_up)
    code, out, err = run(["analyze", close_up, "--whole-frame", "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "whole_frame" and list(report["zones"]) == ["whole_frame"]
    assert report["skin_pixels"] > 0.5 * 280 * 280


def test_format_variants_of_a_real_face_are_analysed_upright(tmp_path, portrait_path, capsys):
    face = Image.open(portrait_path).convert("RGB")
    sideways = face.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    variants = {
        "cmyk.jpg": encode(face.convert("CMYK"), "JPEG", quality=92),
        "grey.png": encode(face.convert("L"), "PNG"),
        "grey16.png": encode(Image.fromarray(np.asarray(face.convert("L"), np.uint16) * 257), "PNG"),
        "rgba.png": encode(face.convert("RGBA"), "PNG"),
        "palette.png": encode(face.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
        "photo.webp": encode(face, "WEBP", quality=85),
        "exif_rotated.jpg": encode(sideways, "JPEG", quality=92, exif=exif.tobytes()),
        "animated.gif": _animated(face),
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
    code, out, err = run(["analyze", *[tmp_path / n for n in variants], "--json", tmp_path / "out", "--quiet"],
                         capsys)
    assert code == 0, err
    reference = json.loads(json.dumps(main_report(portrait_path, tmp_path, capsys)))
    for name in variants:
        report = json.loads((tmp_path / "out" / f"{Path(name).stem}.json").read_text())
        assert report["mode"] == "face", name
        assert (report["image"]["width"], report["image"]["height"]) == (800, 800), name
        box, ref = np.array(report["faces"][0]["box"]), np.array(reference["faces"][0]["box"])
        assert np.abs(box - ref).max() < 40, name  # the face is where it is upright


def main_report(photo, tmp_path, capsys):
    run(["analyze", photo, "--json", tmp_path / "ref.json", "--quiet"], capsys)
    return json.loads((tmp_path / "ref.json").read_text())


def _animated(face: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    frames = [face.convert("P"), Image.new("RGB", face.size, (0, 0, 0)).convert("P")]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def test_hostile_corpus_each_exits_2_with_one_line(tmp_path, portrait_path, capsys):
    corpus = hostile_corpus(tmp_path / "corpus", portrait_path)
    assert len(corpus) >= 30
    for name, path in corpus.items():
        code, out, err = run(["analyze", path], capsys)
        lines = err.strip().splitlines()
        assert code == 2, name
        assert len(lines) == 1 and lines[0].startswith("glowai: ") and "Traceback" not in err, (name, err)


def test_process_level_no_traceback_no_hang(tmp_path, portrait_path):
    corpus = hostile_corpus(tmp_path / "corpus", portrait_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", *corpus.values()],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(corpus), proc.stderr  # one line per file: no warnings, no native logging
    assert "Traceback" not in proc.stderr and all(line.startswith("glowai: ") for line in lines)


def test_weights_list_shows_the_registry(capsys):
    code, out, _ = run(["weights", "list"], capsys)
    default = next(line for line in out.splitlines() if "(default)" in line)
    assert code == 0 and default.startswith(default_spec().name) and "glowai-unet-r34" in out
    assert "Apache-2.0" in next(line for line in out.splitlines() if line.startswith("glowai-unet-small"))


@pytest.mark.data
def test_eval_detection_on_a_small_folder(tmp_path, portrait_path, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(portrait_path.read_bytes())
    Image.new("RGB", (300, 300), (90, 90, 90)).save(folder / "b.png")
    code, out, _ = run(["eval", "detection", "--data", folder, "--json", tmp_path / "d.json", "--quiet"], capsys)
    result = json.loads((tmp_path / "d.json").read_text())
    assert code == 0 and result["total"] == 2 and result["found"] == 1 and result["missed"] == ["b.png"]
