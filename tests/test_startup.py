"""`gradlint check` never imports torch (issue 5: lean start-up; DESIGN: torch is only for the
runtime tracer).

Each check runs gradlint in a fresh interpreter under ``python -X importtime``, which lists every
module the process (and a process pool's workers, which inherit the flag) imports, so a torch
import anywhere on the path — CLI, config, engine, analysis, rules, reporters, cache — is seen
whether or not the code it lints mentions torch. No timing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

TRAINING_SCRIPT = """\
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in data:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward(retain_graph=True)
    opt.step()
"""

PLAIN_MODULE = "def add(a, b):\n    return a + b\n"


def imported_modules(stderr: str) -> set:
    """Module names from ``-X importtime`` lines: ``import time: self | cumulative | name``."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name)
    return names


def run_check(cwd, *args: str) -> tuple:
    """Run ``gradlint check --isolated ARGS`` under -X importtime; (exit status, modules, stderr)."""
    env = dict(os.environ)
    env.pop("GRADLINT_OUTPUT_FORMAT", None)
    env.pop("GITHUB_ACTIONS", None)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gradlint", "check", "--isolated", *args],
        check=False,
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, imported_modules(result.stderr), result.stderr


def torch_modules(modules: set) -> list:
    return sorted(name for name in modules if name == "torch" or name.startswith("torch."))


def test_importtime_sees_imports(tmp_path):
    """The probe works: gradlint's own modules show up in the importtime listing."""
    (tmp_path / "plain.py").write_text(PLAIN_MODULE)
    status, modules, stderr = run_check(tmp_path, "--no-cache", "plain.py")
    assert status == 0, stderr[-2000:]
    assert {"gradlint", "gradlint.cli", "gradlint.engine"} <= modules


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cache"])
def test_check_one_training_script_does_not_import_torch(tmp_path, cached):
    (tmp_path / "train.py").write_text(TRAINING_SCRIPT)
    cache = ["--cache-dir", str(tmp_path / "cache")] if cached else ["--no-cache"]
    runs = 2 if cached else 1  # with a cache: the run that fills it and the one that hits it
    for _ in range(runs):
        status, modules, stderr = run_check(tmp_path, *cache, "train.py")
        assert status in (0, 1), stderr[-2000:]
        assert "Traceback" not in stderr
        assert torch_modules(modules) == []


def test_check_folder_with_process_pool_does_not_import_torch(tmp_path):
    """Enough files for the process pool: its workers must stay torch-free too."""
    for index in range(12):
        (tmp_path / f"train_{index}.py").write_text(TRAINING_SCRIPT)
    status, modules, stderr = run_check(tmp_path, "--no-cache", "-j", "2", ".")
    assert status in (0, 1), stderr[-2000:]
    assert "Traceback" not in stderr
    assert torch_modules(modules) == []
