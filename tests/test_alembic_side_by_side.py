"""An application's own Alembic project in the database eventfold migrated: with the
``exclude_eventfold`` hook (the ``env.py`` docs/operations.md shows, run here as it is
printed), its autogenerate sees only its own tables and ``alembic check`` passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent

ALEMBIC_INI = """\
[alembic]
script_location = migrations
sqlalchemy.url = {url}
"""

USER_TABLES = """\
import sqlalchemy as sa

metadata = sa.MetaData()
customers = sa.Table(
    "customers", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
)
"""

SCRIPT_TEMPLATE = '''\
"""${message}"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''


def documented_env_py() -> str:
    """The ``env.py`` of docs/operations.md, exactly as the page prints it."""
    page = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```python no-run\n(.*?)```", page, re.S)
    [env] = [block for block in blocks if "include_object=exclude_eventfold" in block]
    return str(env)


@pytest.fixture
def user_project(tmp_path: Path, pg_fresh_url: str) -> Path:
    """A user's Alembic project (package ``myapp``) on a fresh database eventfold migrated."""
    project = tmp_path / "project"
    (project / "myapp").mkdir(parents=True)
    (project / "myapp" / "__init__.py").write_text("")
    (project / "myapp" / "tables.py").write_text(USER_TABLES)
    (project / "migrations" / "versions").mkdir(parents=True)
    (project / "migrations" / "script.py.mako").write_text(SCRIPT_TEMPLATE)
    (project / "migrations" / "env.py").write_text(documented_env_py())
    sync_url = make_url(pg_fresh_url).set(drivername="postgresql+psycopg")
    (project / "alembic.ini").write_text(
        ALEMBIC_INI.format(url=sync_url.render_as_string(hide_password=False))
    )
    return project


def alembic(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args], cwd=project, env=env,
        capture_output=True, text=True, timeout=120,
    )


def generated(project: Path) -> str:
    [script] = (project / "migrations" / "versions").glob("*.py")
    return script.read_text()


def test_autogenerate_sees_only_the_applications_tables(user_project: Path) -> None:
    made = alembic(user_project, "revision", "--autogenerate", "-m", "customers")
    assert made.returncode == 0, made.stderr
    script = generated(user_project)
    assert "op.create_table('customers'" in script
    assert "eventfold" not in script

    upgraded = alembic(user_project, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    checked = alembic(user_project, "check")
    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_without_the_hook_autogenerate_would_drop_eventfolds_tables(user_project: Path) -> None:
    env_py = user_project / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace(", include_object=exclude_eventfold", ""))
    made = alembic(user_project, "revision", "--autogenerate", "-m", "careless")
    assert made.returncode == 0, made.stderr
    assert "op.drop_table('eventfold_events')" in generated(user_project)
