"""The package as users get it: pip-installable into a fresh environment, one `liteda` command, every
sub-package shipped, and a repository that speaks of the product only."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_ships_every_subpackage():
    tomllib = pytest.importorskip("tomllib")
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert conf["package-dir"] == {"liteda": "plugins"}
    found = {"liteda" + ("." + ".".join(p.parent.relative_to(ROOT / "plugins").parts) if p.parent != ROOT / "plugins"
                         else "") for p in (ROOT / "plugins").rglob("__init__.py")}
    assert found == set(conf["packages"])


def test_pip_install_into_a_fresh_venv_gives_the_liteda_command(tmp_path):
    """`pip install --no-deps` of a copy of the checkout (its dependencies come from the test's own
    environment), then the console entry point and `python -m liteda` answer --help."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "plugins", src / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    # no pip of its own: the venv's bundled setuptools would be older than pyproject.toml asks for
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-build-isolation", "--no-index", str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    where = subprocess.run([str(py), "-c", "import liteda; print(liteda.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert str(venv) in where.stdout, where.stdout + where.stderr  # the installed copy, not the checkout
    out = subprocess.run([str(venv / "bin" / "liteda"), "train", "--help"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0 and "usage: liteda train" in out.stdout, out.stderr[-2000:]
    top = subprocess.run([str(py), "-m", "liteda", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert top.returncode == 0 and all(c in top.stdout for c in ("train", "adapt", "distill", "compress", "bench"))


def test_unknown_command_is_one_line():
    r = subprocess.run([sys.executable, "-m", "liteda", "trian"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown command 'trian'" in r.stderr


def test_no_sys_path_edits():
    hits = [str(p) for folder in ("plugins", "examples", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")
            if re.search(r"sys\.path\.(insert|append)", p.read_text()) and p.name != "test_package.py"]
    assert hits == []


def test_the_repository_speaks_of_the_product_only():
    """`session` appears only as ONNX Runtime's InferenceSession / session options (or its profiler's field)."""
    allowed = re.compile(r"InferenceSession|SessionOptions|session options|session_options|add_session_config_entry|"
                         r"get_session_config_entry|[\"`]session\.[a-z_.]+|== \"Session\"|sess_options|ort_session",
                         re.I)
    paths = [ROOT / "README.md", ROOT / "Makefile", ROOT / "CHANGELOG.md"]
    for folder in ("plugins", "benchmarks", "docs"):
        paths += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".sh", ".json",
                                                                                        ".csv", ".txt", ".html")]
    bad = []
    for p in paths:
        if not p.is_file():
            continue
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if re.search(r"\bsessions?\b", line, re.I) and not allowed.search(line):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert bad == [], "\n".join(bad[:20])


@pytest.mark.parametrize("registry", ["methods", "techniques", "recipes", "artifacts"])
def test_liteda_list_shows_each_registry(registry):
    r = subprocess.run([sys.executable, "-m", "liteda", "list", registry], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split(), r.stderr
