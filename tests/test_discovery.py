"""Which files `gradlint check` picks: suffixes, excludes, .gitignore, explicit paths, symlinks."""

from __future__ import annotations

import os

import pytest

from gradlint.config import load_settings
from gradlint.discovery import DiscoveryError, discover


def found(project, *paths, force_exclude=None, **overrides):
    settings = load_settings(str(project.root), overrides=overrides or None)
    return [p.replace(os.sep, "/") for p in discover(list(paths) or ["."], settings, force_exclude=force_exclude)]


def test_walks_python_files_and_stubs_only(project):
    for rel in ("a.py", "pkg/b.py", "pkg/c.pyi", "notes.txt", "pkg/data.json", "script"):
        project.write(rel, "x = 1\n")
    assert found(project) == ["./a.py", "./pkg/b.py", "./pkg/c.pyi"]


def test_default_excludes(project):
    for folder in (".git", ".venv", "venv", "build", "dist", "__pycache__", "node_modules",
                   "lib/site-packages", ".tox", ".gradlint_cache", ".mypy_cache"):
        project.write(f"{folder}/x.py", "x = 1\n")
    project.write("keep/x.py", "x = 1\n")
    assert found(project) == ["./keep/x.py"]


def test_exclude_replaces_defaults_and_extend_exclude_adds(project):
    project.write("build/x.py")
    project.write("legacy/y.py")
    project.write("gen/z_pb2.py")
    project.write("src/ok.py")
    assert found(project, exclude=["legacy"]) == ["./build/x.py", "./gen/z_pb2.py", "./src/ok.py"]
    assert found(project, **{"extend-exclude": ["*_pb2.py", "legacy/"]}) == ["./src/ok.py"]


def test_gitignore_nested_negation_and_info_exclude(project):
    (project.root / ".git" / "info").mkdir(parents=True)
    project.write(".git/info/exclude", "secret.py\n")
    project.write(".gitignore", "*.gen.py\nout/\n")
    project.write("pkg/.gitignore", "local_*.py\n!local_keep.py\n")
    for rel in ("a.py", "x.gen.py", "out/b.py", "pkg/local_tmp.py", "pkg/local_keep.py", "pkg/c.py", "secret.py"):
        project.write(rel)
    assert found(project) == ["./a.py", "./pkg/c.py", "./pkg/local_keep.py"]
    everything = found(project, **{"respect-gitignore": False})
    assert "./x.gen.py" in everything and "./out/b.py" in everything and "./secret.py" in everything


def test_gitignore_above_the_given_folder_applies(project):
    project.write(".git/HEAD", "ref: refs/heads/main\n")
    project.write(".gitignore", "ignored/\n")
    project.write("sub/ignored/x.py")
    project.write("sub/y.py")
    assert found(project, "sub") == ["sub/y.py"]


def test_explicit_files_are_linted_even_if_excluded_unless_force_exclude(project):
    project.write("build/gen.py")
    project.write(".gitignore", "tmp_*.py\n")
    project.write("tmp_scratch.py")
    assert found(project, "build/gen.py", "tmp_scratch.py") == ["build/gen.py", "tmp_scratch.py"]
    assert found(project, "build/gen.py", "tmp_scratch.py", force_exclude=True) == []
    assert found(project, "build", force_exclude=True) == []
    assert found(project, "build") == ["build/gen.py"]


def test_force_exclude_from_config(project):
    project.write("pyproject.toml", '[tool.gradlint]\nforce-exclude = true\nextend-exclude = ["skip.py"]\n')
    project.write("skip.py")
    project.write("lint.py")
    settings = load_settings(str(project.root))
    assert discover(["skip.py", "lint.py"], settings) == ["lint.py"]


def test_explicit_file_of_any_suffix(project):
    project.write("tool", "x = 1\n")
    assert found(project, "tool") == ["tool"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_terminates(project):
    project.write("pkg/a.py")
    os.symlink(project.root / "pkg", project.root / "pkg" / "loop")
    os.symlink(project.root, project.root / "pkg" / "up")
    assert found(project) == ["./pkg/a.py"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_broken_symlink_argument(project):
    os.symlink(project.root / "nowhere.py", project.root / "dangling.py")
    with pytest.raises(DiscoveryError, match="broken symbolic link"):
        found(project, "dangling.py")
    assert found(project) == []  # inside a walk, a dangling link is skipped


def test_missing_path_is_an_error(project):
    with pytest.raises(DiscoveryError, match="no_such.py: no such file or directory"):
        found(project, "no_such.py")


def test_duplicates_are_linted_once(project):
    project.write("a.py")
    assert found(project, "a.py", "./a.py", ".") == ["./a.py"] or found(project, "a.py", "./a.py") == ["a.py"]
    assert len(found(project, "a.py", "./a.py", ".")) == 1
