"""The launched demo driven through gradio_client: every tab's api_name, bad input, and that the
server keeps serving after it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import EXAMPLES
from weights import default_spec

gradio_client = pytest.importorskip("gradio_client")
ALL = ["Acne", "Redness", "Texture", "Dryness"]


@pytest.fixture(scope="module")
def client(demo_server):
    url, _, _ = demo_server
    return gradio_client.Client(url, verbose=False)


def analyze(client, path, face="Face 1 (largest)", whole_frame=False):
    return client.predict(gradio_client.handle_file(str(path)), face, whole_frame, ALL, api_name="/analyze")


def test_every_tab_has_a_documented_endpoint(client):
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/analyze", "/filters", "/save_look", "/load_look", "/live_frame", "/prepare_face",
            "/generate"} <= endpoints


def test_analyze_returns_the_report(client):
    masks, zones, card, chart, guidance, report, report_file, footer, faces = analyze(client, EXAMPLES / "portrait-006.jpg")
    assert report["mode"] == "face" and report["face_index"] == 0
    assert report["segmentation"]["status"] == "ok"
    assert set(report["zones"]) == {"forehead", "left_cheek", "right_cheek", "nose", "chin"}
    assert "not a medical device" in report["disclaimer"]
    with open(report_file, encoding="utf-8") as handle:
        assert json.load(handle)["zones"] == report["zones"]  # the download is the same report
    assert Image.open(card).size[0] >= 1000 and Image.open(zones).size[0] > 100
    picture = Image.open(masks)  # one JPEG: the face crop with the conditions tinted, a legend strip under it
    assert picture.format == "JPEG" and 100 < picture.size[0] <= 560 and picture.size[1] > picture.size[0] * 0.5
    assert "Analysed in" in footer and default_spec().name in footer
    assert "not a medical device" in guidance
    assert chart is not None


def test_bad_input_gets_a_message_and_the_server_keeps_serving(client, demo_server, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a photo")
    with pytest.raises(gradio_client.exceptions.AppError, match="use a JPEG, PNG or WebP photo"):
        analyze(client, broken)
    no_face = tmp_path / "wall.png"
    Image.fromarray(np.full((300, 400, 3), 180, np.uint8)).save(no_face)
    with pytest.raises(gradio_client.exceptions.AppError, match="No face found"):
        analyze(client, no_face)
    huge = tmp_path / "huge.jpg"  # over the upload limit: refused before it reaches the server's decoder
    huge.write_bytes(b"\xff\xd8" + bytes(31 * 1024 * 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        analyze(client, huge)
    bomb = tmp_path / "bomb.png"  # small file that claims 100 megapixels
    Image.new("L", (10000, 10000)).save(bomb, optimize=True)
    with pytest.raises(gradio_client.exceptions.AppError, match="pixels"):
        analyze(client, bomb)
    _, process, _ = demo_server
    assert process.poll() is None
    assert analyze(client, EXAMPLES / "portrait-001.jpg")[5]["mode"] == "face"


def test_whole_frame_close_up(client, tmp_path):
    close_up = tmp_path / "cheek.png"
    face = np.asarray(Image.open(EXAMPLES / "portrait-057.jpg"))
    Image.fromarray(face[430:560, 330:460]).resize((390, 390)).save(close_up)  # a patch of cheek, no face
    report = analyze(client, close_up, whole_frame=True)[5]
    assert report["mode"] == "whole_frame" and report["face_index"] is None


def test_filters_and_preset_round_trip(client, tmp_path):
    photo = gradio_client.handle_file(str(EXAMPLES / "portrait-006.jpg"))
    before_after, status = client.predict(photo, 0.8, 0.3, "Preset", "natural", None, 1.0, 0.5, 0.0,
                                          api_name="/filters")
    before, after = (np.asarray(Image.open(p).convert("RGB")) for p in before_after)
    assert before.shape == after.shape and np.abs(before.astype(int) - after.astype(int)).max() > 10
    assert "makeup 'natural'" in status and "retouched" in status and "x0.00" in status  # eyeshadow slider at 0
    saved = client.predict(api_name="/save_look")
    preset = json.loads(open(saved, encoding="utf-8").read())
    assert preset["format"] and preset["regions"]["eyeshadow"]["intensity"] == 0.0  # the slider was at 0
    client.predict(gradio_client.handle_file(saved), api_name="/load_look")
    _, status = client.predict(photo, 0.0, 0.0, "Preset file", "natural", None, 1.0, 1.0, 1.0, api_name="/filters")
    assert "makeup 'natural'" in status and "retouched" not in status


def test_generate_procedural_sample(client):
    message = client.predict(gradio_client.handle_file(str(EXAMPLES / "portrait-028.jpg")), api_name="/prepare_face")
    assert "Face ready" in message[-1]
    pair, mask, qc, status = client.predict("Sample by class and severity", ["Acne", "Redness"], 2, "Acne", None, None,
                                            3, api_name="/generate")
    assert "procedural" in status
    rows = dict((row[0], row[1]) for row in qc["data"])
    assert rows["pixels changed outside the mask"] == "0"
    assert int(rows["Acne pixels"]) > 0
    assert {a["label"] for a in mask["annotations"]} <= {"Acne", "Redness"}


def test_choice_of_face_in_a_group_photo(client):
    first = analyze(client, EXAMPLES / "group" / "two-faces.jpg")
    assert first[5]["face_index"] == 0 and len(first[5]["faces"]) == 2
    assert first[8]["visible"] is True and [c[0] for c in first[8]["choices"]] == ["Face 1 (largest)", "Face 2"]
    second = analyze(client, EXAMPLES / "group" / "two-faces.jpg", face="Face 2")[5]
    assert second["face_index"] == 1 and second["faces"] == first[5]["faces"]


def test_only_the_examples_and_outputs_are_served(demo_server):
    import urllib.error
    import urllib.request

    url, _, _ = demo_server
    for secret in (EXAMPLES.parents[1] / "README.md", EXAMPLES.parents[1] / "weights" / "registry.json"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={secret}", timeout=10)
        assert refused.value.code in (403, 404)
