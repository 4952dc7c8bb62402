"""Docs that run: every ```python block of README.md and docs/*.md is executed as a test.

Blocks of one file run in order in one namespace and one event loop, so a page reads as one
program; top-level ``await`` works. Each block is its own test, named ``file:line``. A block
fenced as ```python no-run is shown but not run (for fragments that cannot stand alone).
Each page runs in its own empty working directory, so a page that opens
``sqlite:///shop.db`` writes nowhere else.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# An opening fence: ``` or ~~~ (three or more), the language, then optional words.
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
NO_RUN = "no-run"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    """The 1-based line of the block's first code line."""
    source: str
    run: bool

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page, in order."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        words = opening["info"].split()
        first = index
        body: list[str] = []
        while index < len(lines) and not lines[index].lstrip().startswith(fence):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        index += 1  # the closing fence
        if words and words[0].lower() in {"python", "py", "python3"}:
            blocks.append(Block(page, first + 1, "\n".join(body) + "\n", NO_RUN not in words[1:]))
    return blocks


@dataclass
class Page:
    """The state one page's blocks share: namespace, event loop, working directory."""

    directory: Path
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__docs__"})
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)
    done: set[int] = field(default_factory=set)
    failed: str | None = None

    def execute(self, block: Block) -> None:
        """Run one block in the page's namespace, awaiting it if it awaits at top level."""
        # Pad with blank lines so tracebacks point at the line in the Markdown file.
        source = "\n" * (block.line - 1) + block.source
        code = compile(
            source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,
        )
        previous = Path.cwd()
        os.chdir(self.directory)
        try:
            if code.co_flags & inspect.CO_COROUTINE:
                self.runner.run(_awaited(eval(code, self.namespace)))
            else:
                exec(code, self.namespace)
        finally:
            os.chdir(previous)


async def _awaited(awaitable: Any) -> None:
    await awaitable


BLOCKS = [block for page in PAGES if page.exists() for block in python_blocks(page)]
RUNNABLE = [block for block in BLOCKS if block.run]
"""Blocks fenced ``python no-run`` are left out on purpose: shown, never run."""


@pytest.fixture(scope="module")
def pages(
    tmp_path_factory: pytest.TempPathFactory, kafka_url: str
) -> Iterator[dict[Path, Page]]:
    """One ``Page`` per Markdown file, its event loop closed after the module. The pages
    find the tests' Kafka (tests/kafka_broker.py) at ``$KAFKA_SERVERS``."""
    opened = {
        page: Page(tmp_path_factory.mktemp(page.stem)) for page in {b.page for b in BLOCKS}
    }
    before = os.environ.get("KAFKA_SERVERS")
    os.environ["KAFKA_SERVERS"] = kafka_url
    yield opened
    for page in opened.values():
        page.runner.close()
    if before is None:
        del os.environ["KAFKA_SERVERS"]
    else:
        os.environ["KAFKA_SERVERS"] = before


def test_the_docs_have_code_to_run() -> None:
    """A collector that finds nothing would pass silently: the README at least has blocks."""
    assert any(block.page.name == "README.md" for block in RUNNABLE)


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_code_block_runs(block: Block, pages: dict[Path, Page]) -> None:
    """The block runs without error after the page's earlier blocks."""
    page = pages[block.page]
    # Selected alone (pytest -k), a block still needs the page's earlier blocks first.
    earlier_blocks = [
        earlier for earlier in RUNNABLE
        if earlier.page == block.page and earlier.line < block.line
        and earlier.line not in page.done
    ]
    for earlier in earlier_blocks:
        _run(page, earlier)
    if page.failed is not None:
        pytest.fail(f"an earlier block of this page failed ({page.failed}), so this one cannot run")
    _run(page, block)


def _run(page: Page, block: Block) -> None:
    if page.failed is not None:
        return
    try:
        page.execute(block)
    except BaseException:
        page.failed = block.id
        raise
    page.done.add(block.line)
