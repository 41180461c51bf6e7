"""`gradlint run` end to end: the script runs as python would run it, the report follows, and the
exit status says whether a finding was confirmed or the script failed."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from click.testing import CliRunner

import gradlint
from gradlint.cli import main
from runtime_helpers import SCRIPTS, gradlint_run

STALE = os.path.join(SCRIPTS, "stale_loop.py")
PACKAGE = os.path.dirname(os.path.realpath(gradlint.__file__)) + os.sep


def _traceback_files(text: str):
    """The files of a printed traceback's frames (`File "PATH", line N`)."""
    return [os.path.realpath(path) for path in re.findall(r'File "([^"]+)", line \d+', text)]


def _ours(path: str) -> bool:
    """A frame of gradlint's own package or of runpy (not merely a path with "gradlint" in it:
    a clone in a folder named gradlint puts that word in every path of its venv)."""
    return path.startswith(PACKAGE) or os.path.basename(path) in ("runpy.py", "<frozen runpy>")


@pytest.fixture
def run(monkeypatch):
    """`gradlint run ARGS` in-process from the scripts folder: (exit status, stdout, stderr)."""
    monkeypatch.chdir(SCRIPTS)
    for name in ("GITHUB_ACTIONS", "GRADLINT_OUTPUT_FORMAT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def invoke(*args):
        result = CliRunner().invoke(main, ["run", *args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_json_report_with_runtime_fields_in_a_subprocess(tmp_path):
    report = tmp_path / "report.json"
    done = gradlint_run("--output-format", "json", "-o", str(report), "stale_loop.py", "--select", "x")
    assert done.returncode == 1, done.stderr
    # Options after SCRIPT belong to the script; the script runs as __main__ with its folder first.
    assert f"argv=['--select', 'x'] main=__main__ path0={SCRIPTS}" in done.stdout
    findings = json.loads(report.read_text())
    (finding,) = [f for f in findings if f["code"] == "GL001"]
    assert finding["path"] == "stale_loop.py" and finding["line"] == 26
    assert finding["runtime"] == "confirmed" and "optimizer step" in finding["evidence"]
    assert finding["static"] in (True, False)


def test_clean_script_exits_0(run):
    status, out, err = run("stale_loop.py", "--clear")
    assert status == 0, out + err
    assert "argv=['--clear']" in out
    assert "gradlint run: traced 4 backward calls and 4 optimizer steps." in err


def test_systemexit_0_is_success_and_nonzero_is_the_scripts_status(run):
    status, out, err = run("stale_loop.py", "--clear", "--exit", "0")
    assert status == 0 and "the script" not in err
    status, out, err = run("stale_loop.py", "--clear", "--exit", "3")
    assert status == 3
    assert "the script exited with status 3; traced 4 backward calls" in err  # the report is produced anyway
    assert "All checks passed" not in err


def test_hard_exit_still_reports_and_keeps_the_scripts_status(tmp_path):
    # os._exit skips interpreter shutdown (scripts use it against hanging DataLoader workers)
    report = tmp_path / "report.json"
    done = gradlint_run("--output-format", "json", "-o", str(report), "stale_loop.py", "--hard-exit", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    (finding,) = json.loads(report.read_text())
    assert finding["code"] == "GL001" and finding["runtime"] == "confirmed"
    done = gradlint_run("stale_loop.py", "--clear", "--hard-exit", "0")
    assert done.returncode == 0 and "traced 4 backward calls" in done.stderr, done.stderr
    done = gradlint_run("stale_loop.py", "--clear", "--hard-exit", "3")
    assert done.returncode == 3
    assert "the script exited with status 3; traced 4 backward calls" in done.stderr
    assert "All checks passed" not in done.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_leaving_with_os_exit_does_not_report():
    done = gradlint_run("stale_loop.py", "--clear", "--fork-child")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.count("gradlint run: traced") == 1 and "traced 4 backward calls" in done.stderr


def test_script_exception_shows_its_traceback_and_still_reports(run):
    status, out, err = run("stale_loop.py", "--fail")
    assert status == 1
    assert "Traceback (most recent call last):" in err and "ValueError: boom after training" in err
    assert 'stale_loop.py", line' in err
    assert _traceback_files(err) and not any(_ours(path) for path in _traceback_files(err))
    assert "GL001" in out and "runtime: confirmed" in out
    assert "the script raised ValueError" in err and "All checks passed" not in err


def test_exception_inside_backward_hides_the_tracers_frames(run):
    status, out, err = run("backward_error.py")
    assert status == 1
    assert "RuntimeError" in err and 'backward_error.py", line' in err
    frames = _traceback_files(err.split("RuntimeError")[0])
    assert frames and not any(_ours(path) for path in frames)  # no tracer frame between the user's and torch's
    assert "the script raised RuntimeError" in err and "All checks passed" not in err


def test_script_closing_stdout_still_gets_its_report(tmp_path):
    report = tmp_path / "report.json"
    done = gradlint_run("close_stdout.py")
    assert done.returncode == 1, done.stderr  # the stale loop's GL001 is confirmed
    assert "GL001" in done.stdout + done.stderr and "Traceback" not in done.stderr
    done = gradlint_run("--output-format", "json", "-o", str(report), "close_stdout.py")
    assert done.returncode == 1 and json.loads(report.read_text())[0]["code"] == "GL001"


def test_keyboard_interrupt_in_the_script_still_reports(run):
    import torch

    before = torch.Tensor.backward
    status, out, err = run("stale_loop.py", "--clear", "--interrupt")
    assert status == 130 and "KeyboardInterrupt" in err and "the script raised KeyboardInterrupt" in err
    assert "traced 4 backward calls" in err
    assert torch.Tensor.backward is before


def test_exit_zero_keeps_findings_but_not_failures(run):
    assert run("--exit-zero", "stale_loop.py")[0] == 0
    assert run("--exit-zero", "stale_loop.py", "--fail")[0] == 1
    assert run("--exit-zero", "stale_loop.py", "--exit", "4")[0] == 4


def test_select_filters_runtime_only_findings(run, tmp_path):
    report = tmp_path / "report.json"
    status, out, err = run("--ignore", "GL001", "--output-format", "json", "-o", str(report), "stale_loop.py")
    assert status == 0 and json.loads(report.read_text()) == []


def test_usage_errors_exit_2(run):
    assert run()[0] == 2
    assert run("no_such_script.py")[0] == 2
    assert run("-m", "no_such_module_gradlint")[0] == 2
    assert run("--output-format", "nope", "stale_loop.py")[0] == 2


def test_module_mode_joins_a_project_helper_in_a_subprocess(tmp_path):
    report = tmp_path / "report.json"
    done = gradlint_run("--output-format", "json", "-o", str(report), "-m", "gl_pkg.train", "a", "--b")
    assert "main=__main__ argv=['a', '--b']" in done.stdout
    findings = json.loads(report.read_text())
    gl002 = [f for f in findings if f["code"] == "GL002"]
    assert gl002 and gl002[0]["path"] == "gl_pkg/steps.py" and gl002[0]["line"] == 5
    assert gl002[0]["runtime"] == "confirmed"
    assert done.returncode == 1


def test_static_pass_reads_and_writes_the_check_cache(run, tmp_path):
    """`gradlint run` shares `gradlint check`'s result cache: a rerun of an unchanged script gets
    the same report, with the static findings served from the cache; --no-cache leaves none."""
    cache = tmp_path / "cache"
    first = run("--cache-dir", str(cache), "stale_loop.py")
    entries = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert first[0] == 1 and "GL001" in first[1] and entries
    for path in entries:  # a rewrite on the second run would show as a new modification time
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    second = run("--cache-dir", str(cache), "stale_loop.py")
    assert second[:2] == first[:2]
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == dict.fromkeys(entries, 1_000_000_000)

    untouched = tmp_path / "none"
    third = run("--no-cache", "--cache-dir", str(untouched), "stale_loop.py")
    assert third[:2] == first[:2] and not untouched.exists()


def test_cache_dir_that_is_a_file_warns_and_runs_without_it(run, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    status, out, err = run("--cache-dir", str(blocker), "stale_loop.py")
    assert status == 1 and "GL001" in out
    assert "is not a folder; running without the cache" in err and blocker.read_text() == "not a folder"


def test_cache_warmer_lints_the_script_in_a_child_while_it_runs(tmp_path, monkeypatch):
    """The child started beside the script fills the same cache entry the static pass reads."""
    from gradlint.runtime.cli import _CacheWarmer

    monkeypatch.chdir(SCRIPTS)
    monkeypatch.delenv("GRADLINT_NO_CACHE_WARMER", raising=False)
    cache = tmp_path / "cache"
    warmer = _CacheWarmer("stale_loop.py", [f"--cache-dir={cache}"])
    child = warmer.child
    assert child is not None
    if hasattr(os, "getpriority"):  # it takes only time the training leaves idle
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
    warmer.finish()
    assert child.returncode == 0 and warmer.child is None
    entries = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert entries
    for path in entries:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    # The run's own static pass finds the child's entry and does not rewrite it (in this test
    # process other project modules imported by earlier tests may add entries of their own).
    monkeypatch.setenv("GRADLINT_NO_CACHE_WARMER", "1")
    result = CliRunner().invoke(main, ["run", f"--cache-dir={cache}", "stale_loop.py"], catch_exceptions=False)
    assert result.exit_code == 1 and "GL001" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in entries} == dict.fromkeys(entries, 1_000_000_000)


def test_cache_warmer_off_by_environment(monkeypatch):
    from gradlint.runtime.cli import _CacheWarmer

    monkeypatch.setenv("GRADLINT_NO_CACHE_WARMER", "1")
    warmer = _CacheWarmer("stale_loop.py", [])
    assert warmer.child is None
    warmer.finish()  # nothing to wait for


def test_concise_report_says_each_findings_runtime_verdict(run):
    status, out, err = run("--output-format", "concise", "stale_loop.py")
    assert status == 1
    # (project modules an earlier in-process test imported may be reported too: unexercised)
    (line,) = [line for line in out.splitlines() if line.startswith("stale_loop.py:") and ": GL001 " in line]
    assert line.startswith("stale_loop.py:26:") and line.endswith("(runtime: confirmed)")
    assert all(line.endswith(")") and "(runtime: " in line for line in out.splitlines() if ": GL" in line)


def test_module_mode_finds_modules_in_the_current_folder_as_python_m_does(tmp_path, monkeypatch):
    """`python -m train` runs ./train.py (the current folder comes first on sys.path), whatever
    folder the gradlint command itself was started from (a console script's is its bin folder)."""
    package = tmp_path / "gl_cwd_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import sys\nprint('package main', sys.argv[1:])\n")
    (tmp_path / "gl_cwd_train.py").write_text("import sys\nprint('module main', __name__, sys.argv[1:])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    for name in ("GITHUB_ACTIONS", "GRADLINT_OUTPUT_FORMAT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for module, expected in (("gl_cwd_train", "module main __main__ ['x']"), ("gl_cwd_pkg", "package main ['x']")):
        result = CliRunner().invoke(main, ["run", "--no-cache", "-m", module, "x"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert expected in result.stdout
    result = CliRunner().invoke(main, ["run", "--no-cache", "-m", "gl_cwd_missing"], catch_exceptions=False)
    assert result.exit_code == 2


def test_no_cache_warmer_child_when_the_scripts_findings_are_cached(tmp_path, monkeypatch):
    """A rerun of an unchanged script has its findings cached: no child is started; after an
    edit (or with an empty cache) one is."""
    import gradlint.runtime.cli as runtime_cli

    script = tmp_path / "train.py"
    script.write_text("import torch\nfor x in loader:\n    model(x).sum().backward()\n    opt.step()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRADLINT_NO_CACHE_WARMER", raising=False)
    started = []
    monkeypatch.setattr(runtime_cli, "_CacheWarmer", lambda script, options: started.append(script))
    monkeypatch.setattr(runtime_cli, "_trace_and_report", lambda *args, **kwargs: 0)
    cache = f"--cache-dir={tmp_path / 'cache'}"

    def run_once():
        CliRunner().invoke(main, ["run", cache, "train.py"], catch_exceptions=False)
        return len(started)

    assert run_once() == 1  # empty cache
    CliRunner().invoke(main, ["check", cache, "train.py"], catch_exceptions=False)  # fills it
    assert run_once() == 1  # cached: no second child
    script.write_text(script.read_text() + "# edited\n")
    assert run_once() == 2


def test_script_runs_on_a_roomy_stack_that_changes_nothing_it_sees():
    """The script's first frame opens a fresh frame-stack chunk: arguments, results, exceptions
    and deep recursion pass through exactly as in a plain call."""
    from gradlint.runtime import cli as run_cli

    def deep(n, *, step=1):
        return 0 if n == 0 else step + deep(n - step, step=step)

    assert run_cli.on_roomy_stack(deep, 600, step=1) == 600
    with pytest.raises(ZeroDivisionError):
        run_cli.on_roomy_stack(lambda: 1 / 0)
    if sys.implementation.name == "cpython" and sys.version_info >= (3, 11):
        assert run_cli._roomy_call.__code__.co_stacksize == run_cli.ROOMY_STACK_WORDS


CHDIR_SCRIPT = """\
import os, sys, tempfile
import torch
from torch import nn

os.chdir(tempfile.mkdtemp())  # a script that moves to its output folder before training
model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(4):
    loss = nn.functional.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 1))
    loss.backward()
    optimizer.step()
print("file", __file__)
"""


def test_script_that_changes_folder_keeps_its_findings_on_its_own_file(tmp_path):
    (tmp_path / "train.py").write_text(CHDIR_SCRIPT)
    report = tmp_path / "report.json"
    done = gradlint_run("--output-format", "json", "-o", str(report), "train.py", cwd=str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert f"file {tmp_path / 'train.py'}" in done.stdout  # __file__ absolute, as python gives it
    findings = json.loads(report.read_text())
    # One finding, on the script itself (not a runtime-only twin under the folder it moved to).
    assert [(f["code"], f["path"], f["line"], f["runtime"]) for f in findings] == [
        ("GL001", "train.py", 10, "confirmed")]


THREAD_SCRIPT = """\
import threading
import torch
from torch import nn

model = nn.Linear(6, 1)


def train():
    loss = nn.functional.mse_loss(model(torch.randn(8, 6)), torch.randn(8, 1), reduction="none")
    loss.backward()


def leave():
    raise SystemExit(0)


worker = threading.Thread(target=train, name="trainer")
worker.start()
worker.join()
quiet = threading.Thread(target=leave)
quiet.start()
quiet.join()
print("main thread done")
"""


def test_exception_in_a_thread_hides_the_tracers_frames(tmp_path):
    (tmp_path / "train.py").write_text(THREAD_SCRIPT)
    done = gradlint_run("train.py", cwd=str(tmp_path))
    assert "main thread done" in done.stdout
    err = done.stderr
    assert "Exception in thread trainer:" in err and "RuntimeError: grad can be implicitly created" in err
    frames = _traceback_files(err.split("RuntimeError")[0])
    assert any(path.endswith("train.py") for path in frames)
    assert frames and not any(_ours(path) for path in frames)
    assert err.count("Exception in thread") == 1  # a thread ended by SystemExit prints nothing, as in python
    assert "GL003" in done.stdout and "runtime: confirmed" in done.stdout


@pytest.mark.parametrize("flag,code,bug_text,about_text", [
    ("--leaf", "GL007", "critic_loss = torch.tensor(", "critic_loss.backward()"),
    ("--history", "GL006", "gen_history.append(gen_loss)", "`gen_loss` carries its autograd graph"),
])
def test_a_finding_is_joined_to_the_backward_it_names_not_the_nearest(tmp_path, flag, code, bug_text, about_text):
    """GL007's leaf and GL006's store are judged by the backward they are about (the static
    finding's related line), though another backward is nearer: one finding, confirmed, and no
    runtime-only twin at the backward, nor a GL005 for the clear before the leaf's backward."""
    report = tmp_path / "report.json"
    done = gradlint_run("--no-cache", "--output-format", "json", "-o", str(report), "gan_two_backwards.py", flag)
    findings = json.loads(report.read_text())
    lines = open(os.path.join(SCRIPTS, "gan_two_backwards.py")).read().splitlines()
    bug_line = next(i for i, text in enumerate(lines, 1) if bug_text in text)
    confirmed = [f for f in findings if f["runtime"] == "confirmed"]
    assert [(f["code"], f["line"]) for f in confirmed] == [(code, bug_line)], findings
    assert about_text in confirmed[0]["message"] and done.returncode == 1
    # the other rule's static finding (the switch that makes its bug is off) is not confirmed
    assert {f["code"] for f in findings} == {"GL006", "GL007"}
