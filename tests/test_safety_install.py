"""`gradlint explain` (and SARIF rule help) from a real non-editable install: the rule pages ship as the namespace
package gradlint.catalogue, which importlib.resources.files() cannot read on Python 3.9."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys
sys.path.insert(0, {target!r})
if {as_39!r}:  # what Python 3.9's importlib.resources does for a namespace package
    import importlib.resources as resources

    def files(package):
        raise TypeError("expected str, bytes or os.PathLike object, not NoneType")

    resources.files = files
import gradlint
assert gradlint.__file__.startswith({target!r}), gradlint.__file__
from gradlint.cli import _rule_page
page = _rule_page("GL001")
from gradlint.reporters.sarif import rule_page  # SARIF rule help reads the same pages
assert rule_page("GL001") == page
print(page.splitlines()[0] if page else "NO PAGE")
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install --no-deps --target` of a copy of the source tree (the repo stays untouched)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "gradlint"), source / "gradlint", ignore=ignore)
    shutil.copytree(os.path.join(REPO, "rules"), source / "rules", ignore=ignore)
    target = base / "target"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(source)],
                          capture_output=True, text=True, cwd=str(base))
    assert done.returncode == 0, done.stderr
    return str(target)


@pytest.mark.parametrize("as_39", [False, True])
def test_explain_reads_the_installed_page(installed, tmp_path, as_39):
    assert os.path.isfile(os.path.join(installed, "gradlint", "catalogue", "GL001.md"))
    assert not os.path.exists(os.path.join(installed, "gradlint", "catalogue", "__init__.py"))
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(target=installed, as_39=as_39)],
                          capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    with open(os.path.join(REPO, "rules", "GL001.md"), encoding="utf-8") as handle:
        assert done.stdout.strip() == handle.readline().strip()
