"""LocalStudio's process handling, with a stand-in child process (no Label Studio needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from labelplan.localstudio import LocalStudio


def test_starting_twice_keeps_the_one_server_and_stop_ends_it(tmp_path: Path) -> None:
    server = LocalStudio(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    server.process = child  # as if start() had run
    try:
        assert server.start() is server  # `with LocalStudio(...).start()` calls start twice
        assert server.process is child  # no second server was spawned, the first is still owned
    finally:
        server.stop(grace=5)
    assert child.poll() is not None and server.process is None
