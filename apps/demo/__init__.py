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
import time
from pathlib import Path

PREFIX = "glowai-demo-"


def private_temp_dir() -> str:
    """Point GRADIO_TEMP_DIR at a fresh folder removed at exit (unless the caller chose one).

    The folder holds its server's pid; folders left by servers that were killed (no exit
    handler ran) are removed here, so a crash does not leave visitors' photos behind for long."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        remove_orphans(Path(tempfile.gettempdir()))
        folder = tempfile.mkdtemp(prefix=PREFIX)
        (Path(folder) / "server.pid").write_text(str(os.getpid()))
        os.environ["GRADIO_TEMP_DIR"] = folder
        # Libraries' own scratch files go there too (onnxruntime writes a telemetry session file
        # into TMPDIR when it loads), so a stopped server leaves nothing in the system temp folder.
        scratch = Path(folder) / "tmp"
        scratch.mkdir()
        os.environ["TMPDIR"] = tempfile.tempdir = str(scratch)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return os.environ["GRADIO_TEMP_DIR"]


def remove_orphans(parent: Path) -> list[Path]:
    """Delete demo temp folders whose server process is gone; returns what was removed."""
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        try:
            pid = int((folder / "server.pid").read_text())
        except (OSError, ValueError):  # no pid yet: a server starting right now, unless it is old
            if time.time() - folder.stat().st_mtime < 60:
                continue
        else:
            try:
                os.kill(pid, 0)
                continue  # its server is running
            except PermissionError:
                continue  # running, as another user
            except ProcessLookupError:
                pass  # its server is gone
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def serve(host: str | None = None, port: int | None = None, queue_size: int = 48, share: bool = False,
          block: bool = True):
    """Build and launch the demo; returns the Blocks (when `block` is False the server runs in a thread)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    private_temp_dir()
    if block:  # a stopped server (SIGTERM, as from a Space or systemd) still removes its temporary files
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from apps.demo.handlers import warm_up
    from apps.demo.ui import launch

    print(f"models ready in {warm_up():.1f} s", flush=True)
    return launch(host, port, queue_size=queue_size, share=share, block=block)
