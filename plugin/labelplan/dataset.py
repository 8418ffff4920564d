"""A labeled dataset to replay labeling on: ``items.jsonl`` plus media files, in one directory.

One item per line::

    {"id": 17, "data": {"image": "images/1f426.png", "version": "E0.6"}, "label": "bird",
     "source": {"version": "E0.6"}, "created_at": "2010-10-11T00:00:00Z"}

``id`` is a positive integer (the Label Studio task id it stands for, so Sequential sampling
serves in this order); ``data`` is the task data as Label Studio would hold it, with ``image``
(a path relative to the directory) or ``text``; ``label`` is the true class (a Label Studio label
value or a plan class name); ``source`` (optional) holds source values, copied into ``data`` when
``data`` lacks them, since the planner reads sources from task data; ``created_at`` (optional) is
an ISO 8601 time. Other keys are ignored.

Features come from the ML backend's own extractors (``labelplan_backend``), computed once and
cached next to the data in ``.labelplan-cache/`` keyed by the items and the extractor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ITEMS_FILE = "items.jsonl"
CACHE_DIR = ".labelplan-cache"
EXTRACT_BATCH = 64


class DatasetError(ValueError):
    """The dataset cannot be used; the message names the file, line and field to fix."""


@dataclass(frozen=True)
class Item:
    """One labeled item: a task as Label Studio would hold it, and its true class."""

    id: int
    data: dict[str, Any]
    label: str
    source: dict[str, Any]
    created_at: datetime | None


@dataclass(frozen=True)
class Dataset:
    """The items of a dataset directory, in file order, and what kind of data they hold."""

    root: Path
    items: tuple[Item, ...]
    data_key: str
    """``image`` or ``text``: the data key the feature extractor reads."""

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        return np.array([item.id for item in self.items], dtype=np.int64)

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.items]

    @property
    def is_image(self) -> bool:
        return self.data_key == "image"

    def fingerprint(self) -> str:
        """Changes when an item's id, data or media content changes: the feature cache key.

        Media are hashed by content, not modification time, so rebuilding the same dataset
        keeps the cache (hashing the example's 16 MB of images takes well under a second).
        """
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(json.dumps([item.id, item.data], sort_keys=True).encode())
            if self.is_image:
                digest.update(
                    hashlib.sha256((self.root / str(item.data["image"])).read_bytes()).digest()
                )
        return digest.hexdigest()[:20]


def read_dataset(root: str | Path) -> Dataset:
    """Read ``root/items.jsonl``; every problem names the line and the field."""
    root = Path(root)
    path = root / ITEMS_FILE
    if not path.is_file():
        raise DatasetError(
            f"{path} does not exist: a dataset is a directory with {ITEMS_FILE} (see "
            "docs/simulate.md); for the example run  python examples/emoji/build.py"
        )
    items: list[Item] = []
    seen: dict[int, int] = {}
    data_key: str | None = None
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            item = _item(line, where)
            if item.id in seen:
                raise DatasetError(
                    f"{where}: field 'id': {item.id} is already used on line {seen[item.id]}"
                )
            seen[item.id] = number
            key = "image" if "image" in item.data else "text" if "text" in item.data else None
            if key is None:
                raise DatasetError(
                    f"{where}: field 'data': needs an 'image' (a path relative to {root}) or a "
                    "'text' key"
                )
            if data_key is None:
                data_key = key
            elif key != data_key:
                raise DatasetError(
                    f"{where}: field 'data': holds {key!r} but earlier items hold {data_key!r}; "
                    "one dataset is one kind of data"
                )
            if key == "image":
                _check_image(root, item.data["image"], where)
            elif not isinstance(item.data["text"], str):
                raise DatasetError(f"{where}: field 'data.text': must be a string")
            items.append(item)
    if data_key is None:
        raise DatasetError(f"{path} holds no items")
    return Dataset(root=root, items=tuple(items), data_key=data_key)


def _item(line: str, where: str) -> Item:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not a JSON object ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: not a JSON object")
    ident = raw.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool) or ident <= 0:
        raise DatasetError(f"{where}: field 'id': must be a positive integer, got {ident!r}")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: field 'data': must be an object (the task data)")
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        raise DatasetError(f"{where}: field 'label': must be a non-empty string (the true class)")
    source = raw.get("source", {})
    if source is None:
        source = {}
    if not isinstance(source, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in source.values()
    ):
        raise DatasetError(
            f"{where}: field 'source': must be an object of text or number values, "
            f'e.g. {{"camera": "c3"}}'
        )
    created = raw.get("created_at")
    created_at = None
    if created is not None:
        try:
            created_at = datetime.fromisoformat(str(created))
        except ValueError as exc:
            raise DatasetError(
                f"{where}: field 'created_at': not an ISO 8601 time ({created!r})"
            ) from exc
    merged = {**source, **data}
    return Item(id=ident, data=merged, label=label, source=dict(source), created_at=created_at)


def _check_image(root: Path, value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{where}: field 'data.image': must be a path relative to {root}")
    target = (root / value).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DatasetError(f"{where}: field 'data.image': {value!r} points outside {root}")
    if not target.is_file():
        raise DatasetError(f"{where}: field 'data.image': {value!r} does not exist in {root}")


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class Features:
    """One feature row and near-duplicate key per dataset item, in dataset order."""

    extractor: str
    matrix: npt.NDArray[np.float32]
    dup_keys: list[str | None]


def dataset_features(dataset: Dataset, progress: Callable[[int], None] | None = None) -> Features:
    """The backend extractor's features for every item, from the cache when it is current.

    The extractor is the one the backend picks for an Image or Text project
    (:func:`labelplan_backend.extractors.choose_extractor`), reading media from the directory
    instead of from Label Studio. ``progress`` is called with the items done per batch.
    """
    from labelplan_backend.extractors import ProjectShape, TaskInput, choose_extractor
    from labelplan_backend.settings import BackendSettings

    shape = ProjectShape(
        control="label",
        control_tag="Choices",
        to_name=dataset.data_key,
        labels=tuple(sorted(set(dataset.labels))),
        object_tag="Image" if dataset.is_image else "Text",
        data_key=dataset.data_key,
    )
    root = dataset.root

    def media(url: str) -> bytes:
        return (root / url).read_bytes()

    extractor = choose_extractor(shape, BackendSettings(), media)
    cache = root / CACHE_DIR / f"{extractor.name.replace(':', '_')}-{dataset.fingerprint()}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            keys = [str(k) or None for k in stored["dup_keys"]]
            if progress:
                progress(len(dataset.items))
            return Features(extractor.name, stored["matrix"].astype(np.float32), keys)
    vectors: list[np.ndarray] = []
    dup_keys: list[str | None] = []
    items = dataset.items
    for start in range(0, len(items), EXTRACT_BATCH):
        batch = items[start : start + EXTRACT_BATCH]
        out = extractor.extract([TaskInput(item.id, item.data) for item in batch])
        for item, extraction in zip(batch, out, strict=True):
            if extraction.vector is None:
                raise DatasetError(
                    f"item {item.id}: the {extractor.name} extractor cannot read it "
                    f"({extraction.problem}); fix or remove the item"
                )
            vectors.append(extraction.vector)
            dup_keys.append(extraction.dup_key)
        if progress:
            progress(len(batch))
    matrix = np.stack(vectors).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".tmp.npz")
    np.savez(partial, matrix=matrix, dup_keys=np.array([k or "" for k in dup_keys], dtype=str))
    partial.replace(cache)
    return Features(extractor.name, matrix, dup_keys)
