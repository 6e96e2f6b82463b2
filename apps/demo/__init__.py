"""Gradio demo: layout and wiring in ui.py, handlers in handlers.py and generate.py.

`serve()` is what `app.py` and `glowai demo` call. It gives the server a private temporary folder
(uploads and generated pictures), emptied every 10 minutes and deleted at exit, before Gradio is
imported (Gradio reads GRADIO_TEMP_DIR at import).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile


def private_temp_dir() -> str:
    """Point GRADIO_TEMP_DIR at a fresh folder removed at exit (unless the caller chose one)."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        folder = tempfile.mkdtemp(prefix="glowai-demo-")
        os.environ["GRADIO_TEMP_DIR"] = folder
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return os.environ["GRADIO_TEMP_DIR"]


def serve(host: str | None = None, port: int | None = None, queue_size: int = 48, share: bool = False,
          block: bool = True):
    """Build and launch the demo; returns the Blocks (when `block` is False the server runs in a thread)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    private_temp_dir()
    if block:  # a stopped server (SIGTERM, as from a Space or systemd) still removes its temporary files
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from apps.demo.ui import launch

    return launch(host, port, queue_size=queue_size, share=share, block=block)
