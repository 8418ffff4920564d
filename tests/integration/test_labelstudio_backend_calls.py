"""The adapter's calls for the ML backend, against a real Label Studio 1.23.2."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from labelplan.labelstudio import LabelStudioClient, MediaUnavailable
from labelplan.localstudio import LocalStudio, free_port

from .backend_server import ImageHost, png
from .factories import IMAGE_CONFIG


def test_an_uploaded_image_is_read_with_label_studios_auth(
    admin: LabelStudioClient,
    label_studio: LocalStudio,
    make_project: Callable[..., tuple[int, list[int]]],
) -> None:
    project_id, _ = make_project(label_config=IMAGE_CONFIG)
    picture = png((1, 2, 3))
    upload = requests.post(
        f"{label_studio.url}/api/projects/{project_id}/import",
        headers={"Authorization": f"Token {label_studio.token}"},
        files={"file": ("photo.png", picture, "image/png")},
        timeout=30,
    )
    upload.raise_for_status()
    task = next(iter(admin.iter_tasks(project_id)))
    url = task.data["image"]
    assert url.startswith("/data/upload/")
    assert requests.get(f"{label_studio.url}{url}", timeout=10).status_code in (401, 403, 302)
    assert admin.read_media(url, max_bytes=1_000_000) == picture
    with pytest.raises(MediaUnavailable, match="limit"):
        admin.read_media(url, max_bytes=10)


def test_another_hosts_image_gets_no_credentials_and_failures_say_where() -> None:
    client = LabelStudioClient("http://127.0.0.1:1", "a-secret-key-never-sent", retry_seconds=1)
    with ImageHost({"a.png": png((9, 9, 9))}) as host:
        assert client.read_media(f"{host.url}/a.png", max_bytes=1_000_000) == host.files["a.png"]
        assert "Authorization" not in host.seen_headers[0]
        with pytest.raises(MediaUnavailable, match="HTTP 404"):
            client.read_media(f"{host.url}/missing.png", max_bytes=1_000_000)
    with pytest.raises(MediaUnavailable, match="could not reach"):
        client.read_media(f"http://127.0.0.1:{free_port()}/x.png", max_bytes=10, timeout=2)
    with pytest.raises(MediaUnavailable, match="only http"):
        client.read_media("s3://bucket/key.png", max_bytes=10)


def test_connecting_the_same_backend_twice_keeps_one(
    admin: LabelStudioClient,
    label_studio: LocalStudio,
    make_project: Callable[..., tuple[int, list[int]]],
) -> None:
    # Label Studio itself is a reachable HTTP server that answers /health; /setup fails, which
    # Label Studio reports as an error, so this checks the refusal path and the lookup.
    project_id, _ = make_project(label_config=IMAGE_CONFIG)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Exception, match="connect the ML backend"):
        admin.connect_ml_backend(project_id, url)
    assert admin.list_ml_backends(project_id) == []
