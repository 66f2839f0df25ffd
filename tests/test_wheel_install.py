"""Smoke test of the built wheels (not editable installs), offline: build the kernel and every plugin with
``pip wheel --no-deps``, check what each wheel ships (metadata complete, no fake servers, no test modules),
install kernel + CSV plugin in a fresh virtual environment from ``.venv/wheelhouse`` and run its ``arbframe``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from arbframe.testing import require_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"  # `make install` keeps the wheels inside the venv running the tests
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache")
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*/") if (p / "pyproject.toml").is_file())
DISTS = {"arbframe": ROOT, **{p.name: p for p in PLUGINS}}


def _declared_version(dist: str) -> str:
    """The version a distribution declares in its one source: the ``__version__`` its pyproject points at."""
    root = DISTS[dist]
    attr = re.search(r'version = \{ attr = "([\w.]+)\.__version__" \}', (root / "pyproject.toml").read_text())
    assert attr, f"{dist}: no dynamic version attr in its pyproject"
    module = Path(*attr.group(1).split("."))
    source = next(p for p in (root / "src" / module / "__init__.py", root / module / "__init__.py",
                              root / "src" / f"{module}.py", root / f"{module}.py") if p.is_file())
    found = re.search(r'^__version__ = "([^"]+)"', source.read_text(), re.M)
    assert found, f"{dist}: no __version__ in {source}"
    return found.group(1)


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_binary(any(WHEELHOUSE.glob("setuptools-*.whl")) and any(WHEELHOUSE.glob("tzdata-*.whl")),
                   f"no offline wheelhouse with setuptools and tzdata at {WHEELHOUSE} (run `make install`)")
    base = tmp_path_factory.mktemp("wheels")
    out = base / "dist"
    sources = []
    for name, path in DISTS.items():
        copy = base / "src" / name  # build from copies: pip writes build files into the source tree
        if name == "arbframe":
            copy.mkdir(parents=True)
            for file in ("pyproject.toml", "README.md", "LICENSE"):
                shutil.copy2(ROOT / file, copy / file)
            shutil.copytree(ROOT / "arbframe", copy / "arbframe", ignore=IGNORE)
        else:
            shutil.copytree(path, copy, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info", "build"))
        sources.append(str(copy))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-index",
          "--find-links", str(WHEELHOUSE), "-w", str(out), *sources])
    built = {}
    for whl in out.glob("*.whl"):
        built[whl.name.split("-")[0]] = whl
    assert set(built) == {n.replace("-", "_") for n in DISTS}, sorted(built)
    return built


def test_wheels_carry_complete_metadata_and_no_test_servers(wheels: dict[str, Path]) -> None:
    for name, whl in wheels.items():
        with zipfile.ZipFile(whl) as z:
            names = z.namelist()
            meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
            meta = Parser().parsestr(z.read(meta_name).decode())
        assert not [n for n in names if "fake_server" in n or "/tests/" in n], (name, names)
        assert meta["License"] == "MIT" and "License :: OSI Approved :: MIT License" in meta.get_all("Classifier")
        assert meta["Version"] == _declared_version(name), name
        assert meta["Description-Content-Type"] == "text/markdown"
        assert len(meta.get_payload()) > 200, f"{name}: no README in the long description"
        if name != "arbframe":
            assert "arbframe<0.2,>=0.1" in meta.get_all("Requires-Dist"), (name, meta.get_all("Requires-Dist"))
    with zipfile.ZipFile(wheels["arbframe"]) as z:
        requires = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode())
    assert any(r.startswith("tzdata") for r in requires.get_all("Requires-Dist"))


def test_fresh_venv_runs_the_installed_cli(wheels: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
          "--no-index", "--find-links", str(WHEELHOUSE), str(wheels["arbframe"]), str(wheels["arbframe_storage_csv"])])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    arbframe = str(venv / "bin" / "arbframe")
    helped = _run([arbframe, "--help"], env=env, cwd=tmp_path)
    assert "run" in helped.stdout and "plugins" in helped.stdout
    listed = _run([arbframe, "plugins"], env=env, cwd=tmp_path).stdout
    assert "arbframe-storage-csv" in listed and "static" in listed and "upbit" not in listed
    # installed, docgen has no checkout to write into: it says so instead of pointing into site-packages
    docgen = subprocess.run([str(python), "-m", "arbframe.kernel.docgen", "--check"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert docgen.returncode == 2 and "not running from a source checkout" in docgen.stderr
    # a time zone other than Seoul/UTC resolves from the tzdata wheel
    code = "from arbframe.trading.statistics import load_timezone; print(load_timezone('Europe/Berlin'))"
    zone = _run([str(python), "-c", code], env=env, cwd=tmp_path)
    assert zone.stdout.strip() == "Europe/Berlin"
