"""`pytest --gradlint` and a DDP run under torchrun, end to end in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from runtime_helpers import SCRIPTS

TEST_FILE = '''
import torch


def _train(clear):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        if clear:
            optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()


def test_training():
    _train(clear=CLEAR)
'''


def _pytest(tmp_path, clear: bool, *options):
    (tmp_path / "test_training_loop.py").write_text(TEST_FILE.replace("CLEAR", str(clear)))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_pytest_plugin_fails_the_session_on_confirmed_findings(tmp_path):
    done = _pytest(tmp_path, False, "--gradlint")
    assert "1 passed" in done.stdout
    assert "gradlint" in done.stdout and "GL001" in done.stdout and "runtime: confirmed" in done.stdout
    assert "test_training_loop.py:12" in done.stdout
    assert done.returncode == 1


def test_pytest_plugin_is_inert_without_the_option(pytestconfig):
    # This very session loaded the plugin through its entry point but was not given --gradlint.
    import torch

    assert pytestconfig.pluginmanager.has_plugin("gradlint")
    assert not pytestconfig.getoption("gradlint")
    assert not hasattr(torch.Tensor.backward, "__gradlint_original__")


def test_pytest_plugin_passes_a_clean_session(tmp_path):
    done = _pytest(tmp_path, True, "--gradlint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gradlint run: traced 3 backward calls and 3 optimizer steps." in done.stdout


def test_torchrun_ddp_merges_ranks_into_one_report(tmp_path):
    report = tmp_path / "report.json"
    env = dict(os.environ, PYTHONWARNINGS="ignore", GRADLINT_RUNTIME_DIR=str(tmp_path / "ranks"),
               OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "gradlint", "run", "--output-format", "json", "-o", str(report), "ddp_train.py", "--stale"],
        cwd=SCRIPTS, env=env, capture_output=True, text=True, timeout=120)
    findings = json.loads(report.read_text())
    (finding,) = [f for f in findings if f["code"] == "GL001"]
    assert finding["runtime"] == "confirmed" and finding["path"] == "ddp_train.py" and finding["line"] == 21
    # 2 stale steps per rank (steps 2 and 3), merged over both ranks.
    assert finding["evidence"].startswith("4 optimizer steps") and "merged over 2 ranks" in finding["evidence"]
    assert done.returncode != 0  # rank 0 exits 1 for the confirmed finding
    assert not os.listdir(tmp_path / "ranks")  # rank files are cleaned up
