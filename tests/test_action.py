"""The GitHub Action (action.yml): valid metadata, and its shell steps do what they say when run here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
SCHEMA = json.loads((Path(__file__).parent / "data" / "github-action-metadata.schema.json").read_text())
BUGGY = textwrap.dedent(
    """\
    import torch.nn.functional as F

    def train(model, loader, opt):
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
    """
)


def test_metadata_is_valid():
    jsonschema.validate(ACTION, SCHEMA)
    assert set(ACTION["inputs"]) == {"paths", "version", "args", "sarif", "python-version"}


def test_schema_rejects_a_run_step_without_shell():
    broken = json.loads(json.dumps(ACTION))
    broken["runs"]["steps"][1].pop("shell")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def _expand(value: str, context: dict) -> str:
    """Resolve the `${{ inputs.x }}`, `${{ github.x }}` and `${{ steps.id.outputs.x }}` expressions."""
    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        scope, _, rest = expr.partition(".")
        if scope == "steps":
            step, _, output = rest.partition(".outputs.")
            return context["steps"].get(step, {}).get(output, "")
        return str(context[scope][rest])

    return re.sub(r"\$\{\{(.*?)\}\}", one, value)


def _condition(step: dict, context: dict) -> bool:
    cond = step.get("if")
    if cond is None:
        return True
    match = re.fullmatch(r"\s*inputs\.(\S+)\s*==\s*'([^']*)'\s*", cond)
    assert match, f"unsupported condition in test: {cond}"
    return context["inputs"][match.group(1)] == match.group(2)


def _run_steps(workdir: Path, inputs: dict, fake_python: Path) -> dict:
    """Run the action's shell steps in order as the runner would; returns the outputs and the
    exit status of the last step (steps that `use` other actions are recorded, not run)."""
    defaults = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()}
    context = {"inputs": {**defaults, **inputs}, "github": {"action_path": str(ROOT)}, "steps": {}}
    used, status = [], 0
    gradlint_dir = Path(shutil.which("gradlint") or sys.executable).parent
    for step in ACTION["runs"]["steps"]:
        if not _condition(step, context):
            continue
        if "uses" in step:
            used.append(step["uses"].split("@")[0])
            continue
        output_file = workdir / f"output-{len(used)}-{step.get('id', 'x')}"
        output_file.write_text("")
        env = {**os.environ, "GITHUB_OUTPUT": str(output_file),
               "PATH": f"{fake_python}{os.pathsep}{gradlint_dir}{os.pathsep}{os.environ['PATH']}"}
        env.update({k: _expand(str(v), context) for k, v in step.get("env", {}).items()})
        assert step["shell"] == "bash"
        proc = subprocess.run(["bash", "-e", "-c", _expand(step["run"], context)], cwd=workdir, env=env,
                              capture_output=True, text=True)
        status = proc.returncode
        if "id" in step:
            context["steps"][step["id"]] = dict(line.split("=", 1) for line in output_file.read_text().splitlines())
        context.setdefault("logs", []).append(proc.stdout + proc.stderr)
        if status != 0:
            break
    return {"status": status, "used": used, "context": context}


@pytest.fixture()
def fake_python(tmp_path: Path) -> Path:
    """A `python` on PATH that records the install command instead of reaching the package index."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    script = bin_dir / "python"
    script.write_text(f'#!/usr/bin/env bash\necho "$@" >> {tmp_path / "pip-calls"}\n')
    script.chmod(0o755)
    return bin_dir


def test_steps_annotate_write_sarif_and_fail_on_findings(tmp_path: Path, fake_python: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(BUGGY)
    result = _run_steps(project, {"paths": "train.py"}, fake_python)
    assert result["status"] == 1  # the final step fails the job on findings
    assert result["context"]["steps"]["check"]["exit-code"] == "1"
    assert result["used"] == ["actions/setup-python", "github/codeql-action/upload-sarif"]
    logs = "".join(result["context"]["logs"])
    assert re.search(r"^::error file=train\.py,line=6,", logs, re.M)
    sarif = json.loads((project / "gradlint.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "GL001"
    assert (tmp_path / "pip-calls").read_text().split() == ["-m", "pip", "install", str(ROOT)]


def test_clean_code_passes_and_version_input_pins_the_index_package(tmp_path: Path, fake_python: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(BUGGY.replace("        loss.backward()", "        opt.zero_grad()\n        loss.backward()"))
    result = _run_steps(project, {"version": "0.2.0", "sarif": "false"}, fake_python)
    assert result["status"] == 0
    assert result["used"] == ["actions/setup-python"]
    assert not (project / "gradlint.sarif").exists()
    assert (tmp_path / "pip-calls").read_text().split() == ["-m", "pip", "install", "torch-gradlint==0.2.0"]


def test_extra_args_reach_gradlint(tmp_path: Path, fake_python: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(BUGGY)
    result = _run_steps(project, {"args": "--exit-zero --ignore GL001", "sarif": "false"}, fake_python)
    assert result["status"] == 0
    assert "::error" not in "".join(result["context"]["logs"])
