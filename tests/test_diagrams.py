"""The docs' pictures are drawn from their sources: each ``docs/diagrams/NAME.svg`` is what
Graphviz makes of ``NAME.dot`` (same texts, in the same order), and every picture a page
shows exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = ROOT / "docs" / "diagrams"
SOURCES = sorted(DIAGRAMS.glob("*.dot"))
SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    return [node.text or "" for node in ElementTree.fromstring(svg).iter(f"{SVG}text")]


@pytest.mark.parametrize("source", SOURCES, ids=[source.stem for source in SOURCES])
def test_each_picture_is_drawn_from_its_source(source: Path) -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.fail("Graphviz draws the docs' diagrams: apt-get install graphviz", pytrace=False)
    drawn = subprocess.run(
        [dot, "-Tsvg", str(source)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    picture = source.with_suffix(".svg")
    assert picture.is_file(), f"draw it: dot -Tsvg {source.name} -o {picture.name}"
    assert texts(picture.read_text()) == texts(drawn), (
        f"{picture.name} is out of date: dot -Tsvg {source.name} -o {picture.name}"
    )


def test_every_picture_a_page_shows_exists() -> None:
    shown = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name}: {target}"
            shown += 1
    assert shown >= len(SOURCES) >= 4
