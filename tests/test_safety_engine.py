"""Engine robustness: cache entries are validated against the file they describe; helper
dependencies are found after `;` and backslash continuations; a worker that dies is reported as
its file's error while the run goes on; workers die with their parent; internal errors name the
file, show a traceback with GRADLINT_DEBUG=1 and never follow "All checks passed"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from gradlint import pool
from gradlint.analysis.imports import forget_files, import_bindings

HELPER = "def reset(opt):\n    pass\n"
TRAIN = textwrap.dedent("""\
    import torch
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        loss = model(torch.ones(1)).sum()
        loss.backward()
        opt.step()
        reset(opt)
    """)


def test_imports_after_a_semicolon_and_backslash_continuations_are_seen(tmp_path):
    (tmp_path / "utils.py").write_text(HELPER)
    (tmp_path / "more.py").write_text(HELPER)
    data = b"import os; from utils import reset\nfrom more import \\\n    reset as r2\nimport os, \\\n    more\n"
    forget_files()
    bound = {(os.path.basename(target), local, remote)
             for target, local, remote in import_bindings(data, str(tmp_path / "t.py"), str(tmp_path))}
    assert ("utils.py", "reset", "reset") in bound
    assert ("more.py", "r2", "reset") in bound
    assert ("more.py", "more", "") in bound


def test_nul_bytes_in_imports_resolve_nothing(tmp_path):
    forget_files()
    assert import_bindings(b"import torch\x00\x00\nfrom . import \x00 as y\n", str(tmp_path / "t.py"),
                           str(tmp_path)) == []


def _run(*args, cwd, env=None):
    full = dict(os.environ, **(env or {}))
    full.pop("GRADLINT_DEBUG", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "gradlint", *args], cwd=cwd, capture_output=True, env=full,
                          timeout=300)


def test_cached_helper_edit_after_semicolon_import_is_not_served_stale(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n")
    (tmp_path / "utils.py").write_text("def reset(opt):\n    opt.zero_grad()\n")
    (tmp_path / "train.py").write_text("import os; from utils import reset\n" + TRAIN)
    cache = str(tmp_path / "cache")
    first = _run("check", "--cache-dir", cache, "train.py", cwd=tmp_path)
    (tmp_path / "utils.py").write_text("def reset(opt):\n    pass\n")
    cached = _run("check", "--cache-dir", cache, "train.py", cwd=tmp_path)
    fresh = _run("check", "--no-cache", "train.py", cwd=tmp_path)
    assert cached.returncode == fresh.returncode
    assert cached.stdout == fresh.stdout
    assert first.returncode == 0


def test_a_cache_entry_that_does_not_fit_the_file_is_a_miss(tmp_path):
    from gradlint.cache import Cache
    from gradlint.config import load_settings

    settings = load_settings(str(tmp_path), isolated=True, overrides={"cache-dir": str(tmp_path / "c")})
    cache = Cache(settings)
    key = "ab" + "0" * 62
    good = {"code": "GL002", "message": "m", "line": 1, "column": 1, "end_line": 1, "end_column": 5,
            "severity": "warning", "fix": {"description": "d", "edits": [[0, 4, ""]]}}
    os.makedirs(os.path.dirname(cache._entry(key)), exist_ok=True)

    def stored(entry):
        with open(cache._entry(key), "w") as handle:
            json.dump({"deps": {}, "findings": [entry]}, handle)
        return cache.get(key, "t.py", lambda: "loss.backward()\n")

    assert stored(good) is not None
    assert stored(dict(good, fix={"description": "d", "edits": [[0, 400, ""]]})) is None  # outside the file
    assert stored(dict(good, line=7, end_line=7)) is None  # past the last line
    assert stored(dict(good, line="1")) is None  # wrong type


def _die_on(paths):
    out = []
    for path in paths:
        if path == "boom":
            import faulthandler

            faulthandler.disable()  # pytest's dump would only be noise: the death is the point
            os.kill(os.getpid(), signal.SIGSEGV)
        out.append(path)
    return out


def test_a_worker_that_dies_is_that_items_error_and_the_run_goes_on():
    items = [f"f{i}" for i in range(20)] + ["boom"]
    results = pool.run(items, 3, _die_on, lambda item: item, lambda o: o.split(":")[0],
                       crashed=lambda item: item + ":crashed")
    assert sorted(results) == sorted([f"f{i}" for i in range(20)] + ["boom:crashed"])


def test_workers_die_with_their_parent(tmp_path):
    marker = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import os, time
        from gradlint.pool import die_with_parent
        parent = os.getpid()
        if os.fork() == 0:
            die_with_parent(parent)
            open({str(marker)!r}, "w").write(str(os.getpid()))
            time.sleep(120)
            os._exit(0)
        time.sleep(120)
        """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(200):
            if marker.exists() and marker.read_text():
                break
            time.sleep(0.05)
        child = int(marker.read_text())
    finally:
        parent.kill()
        parent.wait()
    for _ in range(200):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it was re-parented to us (a subreaper); else init reaps it
            os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the worker outlived its parent")


def test_internal_errors_name_the_file_show_a_traceback_on_request_and_are_never_all_passed(tmp_path, monkeypatch,
                                                                                           gradlint):
    import gradlint.analysis as analysis

    (tmp_path / "train.py").write_text(TRAIN)

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(analysis, "analyze", broken)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRADLINT_DEBUG", raising=False)
    result = gradlint("check", "--no-cache", "-j1", "train.py")
    assert result.exit_code == 2
    assert "internal error while checking train.py: KeyError" in result.stderr
    assert "All checks passed" not in result.stderr
    assert "Traceback" not in result.stderr
    monkeypatch.setenv("GRADLINT_DEBUG", "1")
    result = gradlint("check", "--no-cache", "-j1", "train.py")
    assert "Traceback" in result.stderr and "broken" in result.stderr
