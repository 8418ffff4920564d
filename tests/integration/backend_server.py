"""A real labelplan ML backend under gunicorn, and a tiny image server, for the integration tests."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from PIL import Image

from labelplan.localstudio import free_port, stop_group

BACKEND_DIR = Path(__file__).resolve().parents[2] / "backend"
BASIC_AUTH = ("labelstudio", "backend-pass-for-tests-7f3a")


@dataclass
class BackendServer:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    store_path: Path
    auth: tuple[str, str] = BASIC_AUTH
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    """The backend's environment (an RQ worker beside it needs the same)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_group(self.process, 15)


@contextlib.contextmanager
def running_backend(
    label_studio_url: str,
    api_key: str,
    workdir: Path,
    *,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[BackendServer]:
    """gunicorn with ``workers`` workers on a free port; stopped (process group) afterwards."""
    port = free_port()
    log_path = workdir / "backend.log"
    store_path = workdir / "backend.sqlite3"
    env = dict(os.environ)
    env.update(
        {
            "LABEL_STUDIO_URL": label_studio_url,
            "LABEL_STUDIO_API_KEY": api_key,
            "LABELPLAN_DB": str(store_path),
            "BASIC_AUTH_USER": BASIC_AUTH[0],
            "BASIC_AUTH_PASS": BASIC_AUTH[1],
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "WORKERS": str(workers),
            "THREADS": "4",
            "LOG_LEVEL": "DEBUG",
            "MODEL_DIR": str(workdir),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    env.pop("REDIS_URL", None)
    env.update(extra_env or {})
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [gunicorn, "-c", "gunicorn.conf.py", "_wsgi:app"],
            cwd=BACKEND_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = BackendServer(port, log_path, process, store_path, environment=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the backend exited early:\n{server.log()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{server.url}/health", auth=BASIC_AUTH, timeout=2).ok:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the backend did not come up:\n{server.log()[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        server.stop()


def png(color: tuple[int, int, int], size: int = 64, mark: int = 0) -> bytes:
    """A small PNG of one color with a marked square (so near-identical images differ a little)."""
    image = Image.new("RGB", (size, size), color)
    for x in range(mark, mark + 8):
        for y in range(8):
            image.putpixel((x % size, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ImageHost:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 and records the headers it was sent."""

    files: dict[str, bytes]
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ImageHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.seen_headers.append(dict(self.headers))
                body = host.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
