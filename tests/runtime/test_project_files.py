"""Which imported modules count as the project's (the files `gradlint run` lints besides the script)."""

from __future__ import annotations

import os
import sys
import types

import pytest

from gradlint.runtime.api import imported_project_files


def _module(monkeypatch, name: str, path: str) -> None:
    module = types.ModuleType(name)
    module.__file__ = path
    monkeypatch.setitem(sys.modules, name, module)


def _write(path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x = 1\n")
    return str(path)


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_project_modules_links_and_libraries(tmp_path, monkeypatch):
    project, outside = tmp_path / "project", tmp_path / "outside"
    helper = _write(project / "pkg" / "helper.py")
    library = _write(project / "venv" / "lib" / "site-packages" / "lib_mod.py")
    elsewhere = _write(outside / "other.py")
    kept = _write(outside / "kept.py")
    # a linked file in the project pointing outside it, and one pointing back into it from outside
    os.symlink(elsewhere, project / "pkg" / "linked_out.py")
    os.symlink(helper, outside / "linked_in.py")
    # a linked folder inside the project whose files live outside
    os.symlink(outside, project / "mirror")
    (project / "real_sub").mkdir()
    os.symlink(project / "real_sub", project / "alias_sub")
    in_alias = _write(project / "real_sub" / "step.py")
    for name, path in [("gl_t_helper", helper), ("gl_t_lib", library), ("gl_t_out", str(project / "pkg" / "linked_out.py")),
                       ("gl_t_in", str(outside / "linked_in.py")), ("gl_t_mirror", str(project / "mirror" / "kept.py")),
                       ("gl_t_alias", str(project / "alias_sub" / "step.py"))]:
        _module(monkeypatch, name, path)
    found = set(imported_project_files([str(project)]))
    real = os.path.realpath
    assert real(helper) in found
    assert real(in_alias) in found  # through a linked folder inside the project
    assert real(library) not in found  # an installed package under the project folder
    assert real(elsewhere) not in found and real(kept) not in found  # files that live outside the project
    assert all(not path.startswith(real(str(outside))) for path in found)


def test_relative_and_dotted_module_paths(tmp_path, monkeypatch):
    project = tmp_path / "project"
    step = _write(project / "train" / "step.py")
    _write(project / "_ops.py")
    monkeypatch.chdir(project)
    _module(monkeypatch, "gl_t_relative", "_ops.py")  # as torch.ops names a file it was not loaded from
    _module(monkeypatch, "gl_t_dotted", str(project / "train" / ".." / "train" / "step.py"))
    found = imported_project_files([str(project)])
    assert os.path.realpath(step) in found
    assert os.path.realpath(str(project / "_ops.py")) not in found
