"""Feature extractors behind one interface: text, images, a customer's ONNX model, their predictions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from label_studio_tools.core.label_config import parse_config
from PIL import Image

from labelplan.labelstudio import MediaUnavailable
from labelplan_backend.extractors import (
    CustomerPredictions,
    TaskInput,
    UnsupportedProject,
    choose_extractor,
    project_shape,
)
from labelplan_backend.images import EfficientNetLite0, OnnxImageModel
from labelplan_backend.settings import BackendSettings

IMAGE_CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="car"/></RectangleLabels>
<Choices name="scene" toName="image"><Choice value="day"/><Choice value="night"/></Choices></View>"""


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="PNG")
    return buffer.getvalue()


def media(files: dict[str, bytes]):
    def read(url: str) -> bytes:
        if url not in files:
            raise MediaUnavailable(f"could not reach {url} (ConnectionError)")
        return files[url]

    return read


def test_the_class_control_is_the_choices_even_after_a_region_control() -> None:
    shape = project_shape(parse_config(IMAGE_CONFIG))
    assert (shape.control, shape.labels, shape.data_key, shape.is_image) == (
        "scene",
        ("day", "night"),
        "image",
        True,
    )


def test_a_config_without_classes_is_refused_with_advice() -> None:
    with pytest.raises(UnsupportedProject, match="Choices"):
        project_shape(parse_config('<View><Text name="t" value="$t"/></View>'))


def test_images_give_1280_features_and_a_phash_and_bad_ones_a_reason() -> None:
    files = {"a": png((200, 10, 10)), "broken": b"not an image"}
    extractor = EfficientNetLite0("image", media(files))
    out = extractor.extract(
        [
            TaskInput(1, {"image": "a"}),
            TaskInput(2, {"image": "broken"}),
            TaskInput(3, {"image": "gone"}),
            TaskInput(4, {}),
        ]
    )
    assert out[0].vector is not None and out[0].vector.shape == (1280,)
    assert out[0].dup_key is not None and len(out[0].dup_key) == 16
    assert "not a readable image" in (out[1].problem or "")
    assert "could not reach" in (out[2].problem or "")
    assert "no image URL" in (out[3].problem or "")


def _onnx_mean_color_model(path: Path) -> None:
    """A real ONNX file built by hand (no onnx package needed): GlobalAveragePool + Flatten,
    float input [N, 3, 32, 32] -> [N, 3], i.e. an image's mean colour."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    def field(number: int, payload: bytes | int | str) -> bytes:
        if isinstance(payload, int):
            return varint(number << 3) + varint(payload)
        data = payload.encode() if isinstance(payload, str) else payload
        return varint(number << 3 | 2) + varint(len(data)) + data

    def value_info(name: str, dims: list[int | str]) -> bytes:
        shape = b"".join(field(1, field(2, d) if isinstance(d, str) else field(1, d)) for d in dims)
        tensor = field(1, 1) + field(2, shape)  # elem_type FLOAT
        return field(1, name) + field(2, field(1, tensor))

    pool = field(1, "image") + field(2, "pooled") + field(4, "GlobalAveragePool")
    flat = field(1, "pooled") + field(2, "embedding") + field(4, "Flatten")
    graph = (
        field(1, pool)
        + field(1, flat)
        + field(2, "mean_colour")
        + field(11, value_info("image", ["n", 3, 32, 32]))
        + field(12, value_info("embedding", ["n", 3]))
    )
    model = field(1, 8) + field(8, field(2, 13)) + field(7, graph)
    path.write_bytes(model)


def test_your_own_onnx_image_model_is_an_extractor(tmp_path: Path) -> None:
    model_path = tmp_path / "mean_colour.onnx"
    _onnx_mean_color_model(model_path)
    files = {"red": png((255, 0, 0)), "blue": png((0, 0, 255))}
    settings = BackendSettings(onnx_model=model_path)
    shape = project_shape(parse_config(IMAGE_CONFIG))
    extractor = choose_extractor(shape, settings, media(files))
    assert isinstance(extractor, OnnxImageModel) and extractor.name.startswith("onnx:mean_colour:")
    red, blue = extractor.extract([TaskInput(1, {"image": "red"}), TaskInput(2, {"image": "blue"})])
    assert np.allclose(red.vector, [1.0, 0.0, 0.0], atol=0.01)
    assert np.allclose(blue.vector, [0.0, 0.0, 1.0], atol=0.01)


def test_the_customers_predictions_become_features() -> None:
    extractor = CustomerPredictions("their-model-v3", ("day", "night"), "image")
    mine = {
        "model_version": "their-model-v3",
        "score": 0.8,
        "result": [{"value": {"choices": ["night"]}}],
    }
    other = {
        "model_version": "someone-else",
        "score": 1.0,
        "result": [{"value": {"choices": ["day"]}}],
    }
    with_it, without = extractor.extract(
        [TaskInput(1, {}, (mine, other)), TaskInput(2, {}, (other,))]
    )
    assert np.allclose(with_it.vector, [0.0, 0.8])
    assert "no prediction of model version 'their-model-v3'" in (without.problem or "")
