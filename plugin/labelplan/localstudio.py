"""Run a local Label Studio server as a child process: for the test suite and the demo.

This module starts and stops a process and polls ``/health``; it never reads or writes
project data (that is :mod:`labelplan.labelstudio`'s job). The server runs in its own
process group so that stopping it also stops the workers it spawns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests


class LocalStudioError(RuntimeError):
    """The local Label Studio server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def label_studio_executable() -> str:
    """The ``label-studio`` script of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("label-studio")
    if beside.exists():
        return str(beside)
    found = shutil.which("label-studio")
    if found is None:
        raise LocalStudioError(
            "the label-studio command is not installed: install the test extra "
            "(pip install -e '.[test]') or label-studio==1.23.2"
        )
    return found


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a child started with ``start_new_session=True`` and everything it spawned:
    SIGTERM to its process group, then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


@dataclass
class LocalStudio:
    """A Label Studio server on 127.0.0.1 with one admin user whose legacy token is ``token``.

    Settings chosen for a private, offline server: legacy tokens on (so both token kinds
    work), local ML backends and webhooks allowed (``ML_BLOCK_LOCAL_IP=false``,
    ``SSRF_PROTECTION_ENABLED=false`` — never do this on a server reachable from the
    internet), no version check against PyPI.
    """

    data_dir: Path
    email: str = "admin@labelplan.local"
    password: str = field(default="labelplan-admin", repr=False)
    token: str = field(default="labelplan-admin-token-0001", repr=False)
    port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "label-studio.log"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "LABEL_STUDIO_USERNAME": self.email,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.token,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "ML_BLOCK_LOCAL_IP": "false",
                "SSRF_PROTECTION_ENABLED": "false",
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0) -> LocalStudio:
        """Start the server and wait for ``/health``; on failure stop it and show its log.

        Idempotent: a server this object already runs is not started twice (``with
        LocalStudio(...).start()`` would otherwise leave the first one running, unowned).
        """
        if self.process is not None and self.process.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        command = [
            label_studio_executable(),
            "start",
            "--no-browser",
            "--port",
            str(self.port),
            "--internal-host",
            "127.0.0.1",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.environment(),
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise LocalStudioError(
                    f"label-studio exited with code {self.process.returncode} before it was ready.\n"
                    f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
                )
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise LocalStudioError(
            f"label-studio did not answer /health on {self.url} within {timeout:.0f} s.\n"
            f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        process, self.process = self.process, None
        if process is not None:
            stop_group(process, grace)

    def __enter__(self) -> LocalStudio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
