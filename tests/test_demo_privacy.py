"""Privacy of the demo: what a visitor uploads is not logged, and nothing of it stays on disk once
the server stops (its private temporary folder goes with it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import EXAMPLES, ROOT

gradio_client = pytest.importorskip("gradio_client")


def test_uploads_leave_no_trace_after_the_server_stops(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(TMPDIR=str(tmp), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "core.cli", "demo", "--port", str(port)], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
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
