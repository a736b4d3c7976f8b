"""The package builds whole from a checkout without symlinks, as Windows checks it out.

The sdist and the wheel are built offline (``python -m build --no-isolation``; build and
setuptools come from the test extra) from a copy of the tracked files in which a symlink
would be a plain file holding its target, as git writes it with ``core.symlinks=false``.
The wheel is installed into a fresh virtualenv and serves its browser files; ``npm pack``
in js/ publishes exactly those files.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import bullet_py
from bullet_py.web import JS_DIR

ROOT = Path(__file__).resolve().parent.parent
#: What a page loads; js/test and the npm files stay out of the Python package.
BROWSER_FILES = {"bullet.js", "bert.js", "stream.js", "backbone-bullet.js"}
SYMLINK_MODE = "120000"


def tracked() -> list[tuple[str, str]]:
    """(git mode, path) of every tracked file still present in the work tree."""
    out = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    entries = []
    for line in filter(None, out.split("\0")):
        meta, name = line.split("\t", 1)
        path = ROOT / name
        if path.exists() or path.is_symlink():
            entries.append((meta.split()[0], name))
    return entries


def source_version() -> str:
    """``__version__`` as src/bullet_py/__init__.py writes it (the only place)."""
    tree = ast.parse((ROOT / "src" / "bullet_py" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            return node.value.value
    raise AssertionError("no __version__ in src/bullet_py/__init__.py")


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def copy_without_symlinks(dest: Path) -> None:
    """The tracked files, each symlink replaced by a file holding its target."""
    for mode, name in tracked():
        src, dst = ROOT / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if mode == SYMLINK_MODE:
            dst.write_text(os.readlink(src), encoding="utf-8")
        else:
            shutil.copyfile(src, dst)
            shutil.copymode(src, dst)


def run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Built:
    checkout: Path
    sdist: Path
    wheel: Path  # built straight from the checkout
    wheel_from_sdist: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("packaging")
    checkout = base / "checkout"
    copy_without_symlinks(checkout)
    # Without --sdist/--wheel, build makes the sdist, then a wheel from that sdist alone
    # (what pip does with it); the second run makes a wheel straight from the checkout.
    via_sdist, direct = base / "via-sdist", base / "direct"
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", via_sdist, checkout)
    run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", direct, checkout)
    (sdist,) = via_sdist.glob("*.tar.gz")
    (wheel_from_sdist,) = via_sdist.glob("*.whl")
    (wheel,) = direct.glob("*.whl")
    return Built(checkout, sdist, wheel, wheel_from_sdist)


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_no_symlink_is_tracked() -> None:
    links = [name for mode, name in tracked() if mode == SYMLINK_MODE]
    assert links == []


def test_the_copy_has_the_project_but_no_symlink(built: Built) -> None:
    assert (built.checkout / "js" / "bullet.js").is_file()
    assert not any(p.is_symlink() for p in built.checkout.rglob("*"))
    assert not (built.checkout / "src" / "bullet_py" / "static").exists()


@pytest.mark.parametrize("which", ["wheel", "wheel_from_sdist"])
def test_the_wheel_ships_the_browser_files_and_every_module(built: Built, which: str) -> None:
    wheel = getattr(built, which)
    names = wheel_names(wheel)
    static = {
        n.removeprefix("bullet_py/static/") for n in names if n.startswith("bullet_py/static/")
    }
    assert static == BROWSER_FILES
    with zipfile.ZipFile(wheel) as zf:
        for name in BROWSER_FILES:
            assert zf.read(f"bullet_py/static/{name}") == (ROOT / "js" / name).read_bytes()
    modules = {
        "bullet_py/" + p.relative_to(ROOT / "src" / "bullet_py").as_posix()
        for p in (ROOT / "src" / "bullet_py").rglob("*.py")
    }
    assert modules  # the glob really found the sources
    assert modules <= names, f"not in the wheel: {sorted(modules - names)}"
    assert "bullet_py/py.typed" in names
    assert not any("/test/" in n or n.endswith(("package.json", ".md")) for n in names)


def test_the_wheel_metadata(built: Built) -> None:
    version = source_version()
    assert built.wheel.name == f"bullet_py-{version}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as zf:
        meta = zf.read(f"bullet_py-{version}.dist-info/METADATA").decode()
        license_text = zf.read(f"bullet_py-{version}.dist-info/licenses/LICENSE").decode()
    lines = meta.splitlines()
    assert f"Version: {version}" in lines
    assert "License-Expression: MIT" in lines
    assert "Classifier: Typing :: Typed" in lines
    assert "Classifier: Framework :: aiohttp" in lines
    assert any(line.startswith("Project-URL: ") for line in lines)
    assert "Requires-Dist: aiohttp<3.15,>=3.14.1" in lines
    redis = [line for line in lines if line.startswith("Requires-Dist: redis")]
    assert redis and all("redis>=5.0.1" in line for line in redis), redis
    assert license_text.startswith("MIT License")
    assert "bullet_py contributors" in license_text


def test_the_version_is_written_once() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert bullet_py.__version__ == source_version()


def test_the_sdist_holds_every_tracked_file(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        members = tar.getnames()
    top = f"bullet_py-{source_version()}/"
    names = {m.removeprefix(top) for m in members}
    expected = {name for _, name in tracked()} - {".gitignore"}
    assert expected <= names, f"not in the sdist: {sorted(expected - names)}"
    for name in ("LICENSE", "README.md", "js/bullet.js", "js/package.json", "js/test",
                 "examples/echo.py", "examples/backbone/index.html", "docs/protocol.md",
                 "tests/test_packaging.py", "scripts/setup.sh", ".ci/run"):  # fmt: skip
        assert name in names, name
    assert not any("node_modules" in n or "__pycache__" in n for n in names)


def test_the_installed_wheel_serves_its_js(built: Built, tmp_path: Path) -> None:
    """A fresh virtualenv with only the wheel: JS_DIR and add_static_js find the files."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    inner = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    inner_site = Path(inner.strip())
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
        "--disable-pip-version-check", "--target", inner_site, built.wheel)  # fmt: skip
    # aiohttp and erlastic come from this environment, after the venv's own packages.
    outer = [*site.getsitepackages(), site.getusersitepackages()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(inner_site), *outer])}
    out = run(python, "-c", SERVE_JS, env=env, cwd=tmp_path)
    found = json.loads(out)
    assert Path(found["module"]).is_relative_to(inner_site)
    assert Path(found["js_dir"]) == inner_site / "bullet_py" / "static"
    assert BROWSER_FILES <= set(found["files"])
    assert found["status"] == 200
    assert found["body"] == (ROOT / "js" / "bullet.js").read_text(encoding="utf-8")


#: Run by the virtualenv's python: where bullet_py and its js are, and one file served.
SERVE_JS = """
import asyncio, json, os
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
import bullet_py
from bullet_py.web import JS_DIR

async def main():
    app = web.Application()
    bullet_py.add_static_js(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/js/bullet.js")
        body = await resp.text()
    print(json.dumps({"module": bullet_py.__file__, "js_dir": str(JS_DIR),
                      "files": sorted(os.listdir(JS_DIR)), "status": resp.status, "body": body}))

asyncio.run(main())
"""


def test_a_source_checkout_uses_the_top_level_js() -> None:
    """Editable install or PYTHONPATH=src: the code runs from src/, the files from js/."""
    assert Path(bullet_py.__file__).resolve().is_relative_to(ROOT / "src")
    assert JS_DIR.resolve() == (ROOT / "js").resolve()
    assert BROWSER_FILES <= {p.name for p in JS_DIR.iterdir()}


def test_npm_pack_publishes_the_browser_files() -> None:
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    out = run("npm", "pack", "--dry-run", "--json", "--ignore-scripts", cwd=ROOT / "js", env=env)
    (pack,) = json.loads(out)
    assert pack["name"] == "bullet-py-client"
    assert pack["version"] == source_version()
    assert {f["path"] for f in pack["files"]} == BROWSER_FILES | {"package.json", "README.md"}
    manifest = json.loads((ROOT / "js" / "package.json").read_text(encoding="utf-8"))
    assert manifest["license"] == "MIT"
    assert manifest["main"] in BROWSER_FILES
    assert not manifest.get("dependencies")
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    assert set(tool["setuptools"]["package-data"]["bullet_py.static"]) == set(manifest["files"])
