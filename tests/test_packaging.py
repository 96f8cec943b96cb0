"""quietsync as a user gets it: a wheel, installed into a fresh virtual environment.

One wheel and one venv serve the whole module. The wheel is built from a copy
of the sources (as ``pip wheel . --no-deps`` builds it); the venv gets it with
pip, and finds its dependencies in this interpreter's site-packages through a
``.pth`` file pointing at links to everything there but quietsync itself, so
the tests run offline and only the wheel provides quietsync. Then, from
directories that play the app:

* the wheel's top level is ``quietsync`` (and its dist-info), nothing else, and
  it carries its data files (the API description the server serves);
* an app with its own ``server.py`` and ``replica/`` imports quietsync and runs
  the README example;
* an app's test suite gets the ``quietsync_server`` fixture without a
  ``pytest_plugins`` line, in pytest-asyncio's auto mode and in strict mode
  (and an old conftest that still names the plugin keeps working);
* the console script answers ``--version``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "conflicts", "protocol", "replica", "server")
TIMEOUT = 300


@attrs.frozen
class Installed:
    wheel: Path
    python: Path
    bin: Path

    def run(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )


def _copy_sources(dest: Path) -> None:
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in (*SOURCES, "quietsync"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)


def _dependencies_without_quietsync(dest: Path) -> Path:
    """A folder of links to this interpreter's site-packages, quietsync's own entries left out."""
    dest.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("quietsync", "__editable__")):
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    _copy_sources(src := tmp / "src")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    build = [*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(src)]
    subprocess.run(build, check=True, timeout=TIMEOUT)
    [wheel] = (tmp / "dist").glob("quietsync-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = _dependencies_without_quietsync(tmp / "deps")
    (Path(site) / "dependencies.pth").write_text(f"{deps}\n")
    install = [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, timeout=TIMEOUT)
    return Installed(wheel, python, venv / "bin")


def test_the_wheel_holds_quietsync_and_nothing_else_at_top_level(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"quietsync", f"{installed.wheel.name.split('-py3')[0]}.dist-info"}
    for package in ("conflicts", "protocol", "replica", "replica/jobs", "server", "server/jobs"):
        assert f"quietsync/{package}/__init__.py" in names
    assert "quietsync/py.typed" in names
    assert "quietsync/server/openapi.json" in names  # served at /v1/openapi.json
    assert not any(name.startswith(("benchmarks/", "tests/")) for name in names)


def test_an_app_with_its_own_server_and_replica_runs_the_readme_example(
    installed: Installed, tmp_path: Path
) -> None:
    """Generic names in the app (server.py, replica/) no longer collide with quietsync's."""
    (tmp_path / "server.py").write_text("WHO = 'the app'\n")
    (tmp_path / "replica").mkdir()
    (tmp_path / "replica" / "__init__.py").write_text("WHO = 'the app'\n")
    check = (
        "import quietsync.replica, quietsync.server, quietsync.conflicts, quietsync.protocol\n"
        "import server, replica\n"
        "assert server.WHO == replica.WHO == 'the app'\n"
        "assert 'site-packages' in quietsync.replica.__file__\n"
        "print('ok')\n"
    )
    (tmp_path / "check.py").write_text(check)
    run = installed.run("check.py", cwd=tmp_path)
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme[readme.index("<!-- readme-example:") :], re.S)
    assert block is not None
    (tmp_path / "example.py").write_text(block.group(1))
    run = installed.run("example.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    reply, notifications = run.stdout.strip().splitlines()
    assert reply.startswith("You said: What does quietsync do?")
    assert notifications == "['Reply ready']"


APP_TESTS = """
import pytest
{marker}
async def test_pull_starts_empty(quietsync_server):
    async with quietsync_server.client("alice") as http:
        body = await (await http.get("/v1/pull")).json()
        assert (body["changes"], body["cursor"], body["has_more"]) == ([], 0, False)
    assert quietsync_server.token("bob") == "token-b"

{marker}
@pytest.mark.parametrize("quietsync_server_options", [{{"max_batch": 1}}])
async def test_options(quietsync_server):
    assert quietsync_server.config.max_batch == 1
    async with quietsync_server.client("alice") as http:
        resp = await http.post("/v1/push", json={{"mutations": [{{}}, {{}}]}})
        assert resp.status == 413
"""
USERS_FIXTURE = """
import pytest
{plugins}
@pytest.fixture
def quietsync_users():
    return {{"alice": "token-a", "bob": "token-b"}}
"""


@pytest.mark.parametrize(
    ("mode", "marker", "plugins"),
    [
        ("auto", "", ""),
        ("strict", "@pytest.mark.asyncio", ""),
        ("strict", "@pytest.mark.asyncio", 'pytest_plugins = ["quietsync.pytest_plugin"]'),
    ],
    ids=["asyncio-auto", "asyncio-strict", "old-conftest-naming-the-plugin"],
)
def test_an_app_suite_gets_the_fixture_from_the_entry_point(
    installed: Installed, tmp_path: Path, mode: str, marker: str, plugins: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.pytest.ini_options]\nasyncio_mode = "{mode}"\n'
    )
    (tmp_path / "conftest.py").write_text(textwrap.dedent(USERS_FIXTURE.format(plugins=plugins)))
    (tmp_path / "test_app.py").write_text(textwrap.dedent(APP_TESTS.format(marker=marker)))
    run = installed.run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


def test_the_console_script_reports_the_version(installed: Installed, tmp_path: Path) -> None:
    run = subprocess.run(
        [str(installed.bin / "quietsync"), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    version = installed.wheel.name.split("-")[1]
    assert (run.returncode, run.stdout.strip()) == (0, f"quietsync {version}")
