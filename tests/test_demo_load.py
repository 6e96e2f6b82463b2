"""The demo's queue under a burst: requests past its limit are told the server is busy, the rest
are served, and the server keeps serving (the 32-user figures come from bench/load_demo.py)."""

from __future__ import annotations

import signal
import threading

import pytest

from tests.conftest import EXAMPLES, start_demo

gradio_client = pytest.importorskip("gradio_client")


def test_requests_past_the_queue_get_a_busy_message(tmp_path):
    server, url = start_demo(tmp_path, tmp_path / "server.log", "--queue-size", "1")
    try:
        photo = gradio_client.handle_file(str(EXAMPLES / "portrait-001.jpg"))
        clients = [gradio_client.Client(url, verbose=False) for _ in range(10)]
        results: list[str] = []
        gate = threading.Barrier(len(clients))

        def user(client) -> None:
            gate.wait()
            try:
                client.predict(photo, "Face 1 (largest)", False, ["Acne"], api_name="/analyze")
                results.append("served")
            except Exception as err:  # noqa: BLE001 - every outcome is collected and checked below
                results.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=user, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        served = results.count("served")
        busy = [r for r in results if "queue is full" in r.lower()]
        assert len(results) == 10 and served + len(busy) == 10, results
        assert 1 <= served <= 3 and busy  # 2 running + 1 waiting at most
        assert server.poll() is None
        report = clients[0].predict(photo, "Face 1 (largest)", False, ["Acne"], api_name="/analyze")[5]
        assert report["mode"] == "face"  # and it serves the next one
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
