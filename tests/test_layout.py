"""One import name: the distribution installs ``eventfold`` and nothing else at the top, so an
application's own ``projections``, ``aggregates`` or ``eventstore`` packages never clash."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from layout_support import BARE_PACKAGE_NAMES

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ["eventfold", "tests", "examples", "benchmarks", *sorted(BARE_PACKAGE_NAMES)]


def python_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCE_DIRS:
        # eventfold/ links to the package folders: walk each folder once, by its own name.
        for path in (ROOT / name).rglob("*.py"):
            if name == "eventfold" and path.relative_to(ROOT / name).parts[0] in (
                BARE_PACKAGE_NAMES
            ):
                continue
            files.append(path)
    return files


def bare_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [
            f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
            for name in names
            if name.split(".")[0] in BARE_PACKAGE_NAMES
        ]
    return found


def test_code_imports_the_packages_only_through_eventfold() -> None:
    files = python_files()
    assert len(files) > 100
    offenders = [line for path in files for line in bare_imports(path)]
    assert offenders == [], "import these as eventfold.<package>:\n" + "\n".join(offenders)


def test_the_package_folders_are_linked_into_eventfold() -> None:
    for name in BARE_PACKAGE_NAMES:
        link = ROOT / "eventfold" / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}", link
        assert (ROOT / name / "__init__.py").is_file()
        assert (ROOT / name / "py.typed").is_file()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The distribution built as a wheel and installed (without dependencies) into a folder."""
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the tracked files (links kept as links), so the build leaves nothing behind.
    source = out / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        origin, copy = ROOT / name, source / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            copy.symlink_to(os.readlink(origin))
        elif origin.is_file():
            shutil.copy2(origin, copy)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
        check=True, capture_output=True,
    )
    [wheel] = out.glob("eventfold-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def test_the_wheel_installs_one_import_name(installed: Path) -> None:
    top_level = {
        path.name for path in installed.iterdir() if not path.name.endswith(".dist-info")
    }
    assert top_level == {"eventfold"}
    package = installed / "eventfold"
    assert not any(path.is_symlink() for path in package.iterdir())
    for name in BARE_PACKAGE_NAMES:
        assert (package / name / "__init__.py").is_file(), name
        assert (package / name / "py.typed").is_file(), name
    versions = package / "eventstore" / "migrations" / "versions"
    assert len(list(versions.glob("0*.py"))) >= 4
    assert (package / "eventstore" / "migrations" / "script.py.mako").is_file()


USER_PACKAGE = '''
"""The user's own {name} package: nothing to do with eventfold's."""

MINE = "{name}"
'''

USER_APP = '''
"""A user's application: its own packages share names with eventfold's folders."""

import sqlalchemy as sa

import aggregates
import eventstore
import messaging
import processes
import projections
import snapshots
import upcasters
from eventfold import (
    Aggregate, App, Event, Projection, ProjectionContext, applies, handles, migrate,
)

assert {
    module.MINE for module in (
        aggregates, eventstore, messaging, processes, projections, snapshots, upcasters
    )
} == {"aggregates", "eventstore", "messaging", "processes", "projections", "snapshots",
      "upcasters"}


class Opened(Event):
    owner: str


class Account(Aggregate):
    owner: str = ""

    def open(self, owner: str) -> None:
        self.record(Opened(owner=owner))

    @applies(Opened)
    def _opened(self, event: Opened) -> None:
        self.owner = event.owner


class Owners(Projection):
    name = "owners"
    metadata = sa.MetaData()
    table = sa.Table("owners", metadata, sa.Column("owner", sa.Text(), primary_key=True))

    @handles(Opened)
    async def _opened(self, event: Opened, ctx: ProjectionContext) -> None:
        await ctx.connection.execute(ctx.owners.insert().values(owner=event.owner))


app = App(events=[Opened], aggregates=[Account], projections=[Owners()])


async def main() -> None:
    await migrate("sqlite:///user.db")
    async with app.connect("sqlite:///user.db") as running:
        await running.repository.create(Account, "1", lambda account: account.open("ada"))
        async with running.runner() as runner:
            await runner.wait_until(await running.store.head(), timeout=30)
        async with running.engine.connect() as conn:
            owners = (await conn.execute(sa.select(Owners.table.c.owner))).scalars().all()
    print("owners:", list(owners))
'''


def test_an_application_with_packages_named_like_ours_runs(
    installed: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    for name in BARE_PACKAGE_NAMES:
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(USER_PACKAGE.format(name=name))
    (project / "userapp.py").write_text(textwrap.dedent(USER_APP))
    env = {
        **os.environ,
        # The installed wheel, not the repository; the project's own folder first, as a
        # user's `python -m` or script run puts it.
        "PYTHONPATH": os.pathsep.join([str(project), str(installed)]),
    }
    run = subprocess.run(
        [sys.executable, "-c", "import asyncio, userapp; asyncio.run(userapp.main())"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "owners: ['ada']"
    where = subprocess.run(
        [sys.executable, "-c", "import eventfold; print(eventfold.__file__)"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    )
    assert where.stdout.startswith(str(installed)), where.stdout
    cli = subprocess.run(
        [sys.executable, "-c", "from eventfold.cli import main; main()", "--app", "userapp:app",
         "--database", "sqlite:///user.db", "projections", "status"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "owners" in cli.stdout
