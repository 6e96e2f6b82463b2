"""Privacy of the demo: what a visitor uploads is not logged, and nothing of it stays on disk once
the server stops (its private temporary folder goes with it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import EXAMPLES, start_demo

gradio_client = pytest.importorskip("gradio_client")


def test_uploads_leave_no_trace_after_the_server_stops(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "server.log"
    server, url = start_demo(tmp, log)
    try:
        selfie = tmp_path / "jane-doe-private-selfie.jpg"
        selfie.write_bytes((EXAMPLES / "portrait-006.jpg").read_bytes())
        broken = tmp_path / "jane-doe-broken.jpg"
        broken.write_bytes(b"\xff\xd8 not a photo")
        client = gradio_client.Client(url, verbose=False)
        shown = ["Acne", "Redness", "Texture", "Dryness"]
        client.predict(gradio_client.handle_file(str(selfie)), "Face 1 (largest)", False, shown, api_name="/analyze")
        client.predict(gradio_client.handle_file(str(selfie)), 0.5, 0.3, "Preset", "natural", None, 1, 1, 1,
                       api_name="/filters")
        client.predict(api_name="/save_look")
        with pytest.raises(gradio_client.exceptions.AppError):
            client.predict(gradio_client.handle_file(str(broken)), "Face 1 (largest)", False, shown,
                           api_name="/analyze")
        private = [p for p in tmp.iterdir() if p.name.startswith("glowai-demo-")]
        assert len(private) == 1
        held = [p for p in private[0].rglob("*") if p.is_file()]
        assert any(p.name == selfie.name for p in held)  # the upload was there while serving...
        assert any(p.suffix in (".jpeg", ".jpg", ".png", ".webp") and p.name != selfie.name for p in held)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    leftovers = [p for p in tmp.rglob("*") if p.is_file()]
    assert leftovers == []  # ...and nothing of it, nor of the pictures made from it, is left
    assert "jane-doe" not in log.read_text()  # no file name of a visitor's photo in the server's output


def test_a_killed_server_leaves_its_photos_only_until_the_next_start(tmp_path):
    from apps.demo import PREFIX, remove_orphans

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"{PREFIX}killed"
    (orphan / "upload").mkdir(parents=True)
    (orphan / "upload" / "selfie.jpg").write_bytes(b"photo")
    (orphan / "server.pid").write_text(str(dead.pid))  # a server that was SIGKILLed: no exit handler ran
    alive = tmp_path / f"{PREFIX}alive"
    alive.mkdir()
    (alive / "server.pid").write_text(str(os.getpid()))
    starting = tmp_path / f"{PREFIX}starting"  # no pid file yet, just created: left alone
    starting.mkdir()
    assert remove_orphans(tmp_path) == [orphan]
    assert not orphan.exists() and alive.is_dir() and starting.is_dir()


def test_a_demo_killed_mid_request_restarts_clean(tmp_path):
    import threading

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "server.log"
    server, url = start_demo(tmp, log)
    client = gradio_client.Client(url, verbose=False)
    photo = gradio_client.handle_file(str(EXAMPLES / "portrait-057.jpg"))
    outcome = []
    request = threading.Thread(target=lambda: outcome.append(_try(lambda: client.predict(
        photo, "Face 1 (largest)", False, ["Acne"], api_name="/analyze"))))
    request.start()
    time.sleep(0.1)  # the request is in flight (the models are warm since start: an analysis takes ~0.1 s)
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)
    request.join(timeout=60)
    first = [p for p in tmp.iterdir() if p.name.startswith("glowai-demo-")]
    assert len(first) == 1  # killed: its folder is still there...
    server, url = start_demo(tmp, log)
    try:
        assert not first[0].exists()  # ...until the next start removes it
        report = gradio_client.Client(url, verbose=False).predict(photo, "Face 1 (largest)", False, ["Acne"],
                                                                  api_name="/analyze")[5]
        assert report["mode"] == "face"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert outcome and outcome[0] is not None  # the interrupted request failed on the client, not silently


def _try(call):
    try:
        call()
    except Exception as err:  # noqa: BLE001 - any failure of the interrupted request is the expected outcome
        return err
    return None
