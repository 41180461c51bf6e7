"""SARIF output: every document is validated against the SARIF 2.1.0 schema (copied to
tests/data with its notice) and checked for what GitHub code scanning requires."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import jsonschema
import pytest

from gradlint.findings import RULES, Edit, Finding, Fix
from gradlint.reporters import ReportContext, renderer
from harness import syntax_error_at

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
render = renderer("sarif")


def validate(text: str) -> dict:
    """Parse and validate a SARIF document: schema (draft-04 with format checks) and GitHub's needs."""
    doc = json.loads(text)
    cls = jsonschema.validators.validator_for(SCHEMA)
    assert cls is jsonschema.Draft4Validator
    cls.check_schema(SCHEMA)
    errors = list(cls(SCHEMA, format_checker=cls.FORMAT_CHECKER).iter_errors(doc))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    check_github_requirements(doc)
    return doc


def check_github_requirements(doc: dict) -> None:
    """The fields GitHub code scanning documents as required or relies on."""
    assert doc["$schema"] and doc["version"] == "2.1.0"
    [run] = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "gradlint"
    assert driver["version"] and driver["semanticVersion"] and driver["informationUri"].startswith("https://")
    rules = driver["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))
    for rule in rules:
        assert rule["id"] in RULES and rule["name"] == RULES[rule["id"]].name and len(rule["name"]) <= 255
        assert 0 < len(rule["shortDescription"]["text"]) <= 1024
        assert 0 < len(rule["fullDescription"]["text"]) <= 1024
        assert rule["help"]["text"] and rule["help"]["markdown"]
        assert rule["helpUri"].startswith("https://") and rule["helpUri"].endswith(f"/{rule['id']}.md")
        assert rule["defaultConfiguration"]["level"] in ("note", "warning", "error")
        assert rule["properties"]["precision"] in ("very-high", "high", "medium", "low")
        assert 0 < len(rule["properties"]["tags"]) <= 10
        assert "security-severity" not in rule["properties"]
    base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base.startswith("file:///") and base.endswith("/")
    assert run["automationDetails"]["id"]
    assert run["columnKind"] == "unicodeCodePoints"
    assert isinstance(run["results"], list)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("note", "warning", "error")
        assert result["message"]["text"]
        assert 1 <= len(result["locations"]) <= 10
        physical = result["locations"][0]["physicalLocation"]
        uri = physical["artifactLocation"]["uri"]
        if physical["artifactLocation"].get("uriBaseId") == "%SRCROOT%":
            parsed = urlparse(uri)
            assert not parsed.scheme and not uri.startswith("/") and "\\" not in uri and " " not in uri
        else:
            assert uri.startswith("file:///")
        region = physical.get("region")
        if region:
            assert region["startLine"] >= 1 and region["endLine"] >= region["startLine"]
            if "startColumn" in region and region["endLine"] == region["startLine"]:
                assert region["endColumn"] >= region["startColumn"]
        assert result["partialFingerprints"]["gradlint/v1"]


def ctx(tmp_path, sources=None, codes=("GL001", "GL002", "GL003")):
    sources = sources or {}
    return ReportContext(
        cwd=str(tmp_path), rules=[RULES[c] for c in codes], files_checked=len(sources), source_of=sources.get
    )


def finding(code="GL001", path="train.py", line=4, column=5, end_line=None, end_column=20, message="m", **kw):
    return Finding(
        code=code,
        message=message,
        path=path,
        line=line,
        column=column,
        end_line=line if end_line is None else end_line,
        end_column=end_column,
        severity=RULES[code].severity,
        **kw,
    )


TRAIN = """import torch
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x in data:
    loss = model(x).sum()
    loss.backward()
    opt.step()
for x in data:
    loss = model(x).sum()
    loss.backward()
    opt.step()
"""


def test_clean_run_is_a_valid_document_with_empty_results(tmp_path):
    doc = validate(render([], ctx(tmp_path)))
    run = doc["runs"][0]
    assert run["results"] == []
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["GL001", "GL002", "GL003"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.as_uri() + "/"


def test_results_have_everything_code_scanning_needs(tmp_path):
    findings = [
        finding(line=6, column=5, end_column=20, message="backward accumulates onto stale gradients"),
        finding(code="GL002", path="pkg/loop.py", line=3, column=1, end_line=5, end_column=2),
    ]
    doc = validate(render(findings, ctx(tmp_path, {"train.py": TRAIN})))
    run = doc["runs"][0]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    gl001 = by_rule["GL001"]
    assert gl001["level"] == "error" and gl001["message"]["text"] == "backward accumulates onto stale gradients"
    assert gl001["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "train.py", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 6, "startColumn": 5, "endLine": 6, "endColumn": 20},
    }
    gl002 = by_rule["GL002"]
    assert gl002["level"] == "warning"
    assert gl002["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "pkg/loop.py"
    assert gl002["locations"][0]["physicalLocation"]["region"]["endLine"] == 5


def test_rules_cover_referenced_codes_and_use_rule_pages(tmp_path):
    findings = [finding(code="GL000", line=1, column=1, end_column=2, message="cannot parse")]
    doc = validate(render(findings, ctx(tmp_path, codes=("GL003",))))
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["GL003", "GL000"]
    assert doc["runs"][0]["results"][0]["ruleIndex"] == 1
    page = Path(__file__).parent.parent / "rules" / "GL001.md"
    doc = validate(render([], ctx(tmp_path, codes=("GL001",))))
    help_ = doc["runs"][0]["tool"]["driver"]["rules"][0]["help"]
    if page.exists():
        assert help_["markdown"] == page.read_text(encoding="utf-8").strip()
    else:  # pages are optional at runtime: the rule summary stands in
        assert "gradlint explain GL001" in help_["markdown"]


def test_hostile_paths_are_valid_relative_uris(tmp_path):
    paths = ["dir with space/t#r?a%in.py", "ünï/训练.py", "a,b:c/x.py"]
    doc = validate(render([finding(path=p) for p in paths], ctx(tmp_path)))
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in doc["runs"][0]["results"]]
    assert sorted(unquote(u) for u in uris) == sorted(paths)
    assert all(urlparse(u).path == u for u in uris)  # no '?' or '#' cutting the path short


def test_paths_outside_cwd_are_absolute_file_uris(tmp_path):
    outside = tmp_path.parent / "elsewhere.py"
    doc = validate(render([finding(path=str(outside))], ctx(tmp_path / "proj")))
    location = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": outside.as_uri()}


def fingerprints(doc):
    return {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"]): r["partialFingerprints"][
            "gradlint/v1"
        ]
        for r in doc["runs"][0]["results"]
    }


def test_fingerprints_stable_when_lines_move_and_unique_for_twins(tmp_path):
    twins = [finding(line=6, end_column=20), finding(line=10, end_column=20)]
    before = fingerprints(validate(render(twins, ctx(tmp_path, {"train.py": TRAIN}))))
    assert len(set(before.values())) == 2  # identical lines still get distinct fingerprints
    shifted_source = "# a comment\n\n" + TRAIN.replace("import torch\n", "import torch\nimport os\n")
    shifted = [finding(line=9, end_column=20), finding(line=13, end_column=20)]
    after = fingerprints(validate(render(shifted, ctx(tmp_path, {"train.py": shifted_source}))))
    assert sorted(before.values()) == sorted(after.values())
    assert before[("GL001", 6)] == after[("GL001", 9)]
    # re-indenting the flagged line does not change it either; editing it does
    edited = TRAIN.replace("    loss.backward()\n    opt.step()\nfor", "    loss.backward(  )\n    opt.step()\nfor", 1)
    changed = fingerprints(validate(render(twins, ctx(tmp_path, {"train.py": edited}))))
    assert changed[("GL001", 6)] != before[("GL001", 6)]


def test_fix_is_exported(tmp_path):
    source = "loss.backward(retain_graph=True)\n"
    start = source.index("retain")
    fix = Fix("remove retain_graph=True", (Edit(start, source.index(")"), ""),))
    f = finding(code="GL002", line=1, column=1, end_column=33, fix=fix)
    doc = validate(render([f], ctx(tmp_path, {"train.py": source})))
    [result] = doc["runs"][0]["results"]
    [change] = result["fixes"][0]["artifactChanges"]
    assert change["artifactLocation"] == {"uri": "train.py", "uriBaseId": "%SRCROOT%"}
    deleted = change["replacements"][0]["deletedRegion"]
    assert deleted["charOffset"] == start and deleted["charLength"] == len("retain_graph=True")
    assert (deleted["startLine"], deleted["startColumn"], deleted["endColumn"]) == (1, start + 1, 32)


def test_runtime_and_notebook_findings(tmp_path):
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 1, "source": ["x = 1\n", "loss.backward()"]}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    text = json.dumps(notebook, indent=1)
    cell = finding(path="nb.ipynb", line=2, column=1, end_column=16).with_(cell=1)
    runtime = finding(line=2).with_(runtime="confirmed", evidence="gradients carried over 3 steps")
    doc = validate(render([cell, runtime], ctx(tmp_path, {"nb.ipynb": text})))
    results = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r for r in doc["runs"][0]["results"]}
    region = results["nb.ipynb"]["locations"][0]["physicalLocation"]["region"]
    assert text.split("\n")[region["startLine"] - 1].strip() == '"loss.backward()"'
    assert results["nb.ipynb"]["properties"]["cell"] == 1
    assert results["train.py"]["properties"]["runtime"] == "confirmed"


@pytest.mark.parametrize("bad", [{"level": "fatal"}, {"message": None}, {"startLine": 0}])
def test_validator_catches_broken_documents(tmp_path, bad):
    """Guard against a validator that silently accepts anything."""
    doc = json.loads(render([finding()], ctx(tmp_path)))
    result = doc["runs"][0]["results"][0]
    if "level" in bad:
        result["level"] = "fatal"
    elif "message" in bad:
        del result["message"]
    else:
        result["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    with pytest.raises(AssertionError):
        validate(json.dumps(doc))


# A loop that steps and runs backward every iteration but never clears the gradients.
LOOP_WITHOUT_ZERO_GRAD = """\
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in data:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
"""


# --- end to end through `gradlint check` ------------------------------------------------------


def test_cli_writes_valid_sarif(project, gradlint):
    project.write("ok.py", "import torch\n")
    project.write("pkg/broken file.py", "x = (\nloss.backward()\n")
    result = gradlint("check", "--no-cache", "--output-format", "sarif", "-o", "out.sarif")
    assert result.exit_code == 1
    doc = validate((project.root / "out.sarif").read_text(encoding="utf-8"))
    [res] = doc["runs"][0]["results"]
    assert res["ruleId"] == "GL000"
    location = res["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "pkg/broken%20file.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"]["startLine"] == int(syntax_error_at("x = (\nloss.backward()\n").split(":")[0])
    assert doc["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == Path.cwd().as_uri() + "/"


def test_cli_clean_and_empty_runs_write_documents(project, gradlint):
    project.write("ok.py", "import torch\n")
    result = gradlint("check", "--no-cache", "--output-format", "sarif")
    assert result.exit_code == 0
    assert validate(result.stdout)["runs"][0]["results"] == []
    project.write("README.md", "no python\n")
    (project.root / "ok.py").unlink()
    result = gradlint("check", "--no-cache", "--output-format", "sarif")
    assert result.exit_code == 0
    assert validate(result.stdout)["runs"][0]["results"] == []


def test_cli_real_findings_keep_fingerprints_when_lines_move(project, gradlint):
    retained = "import torch\nw = torch.ones(3, requires_grad=True)\nloss = (w * 2).sum()\nloss.backward(retain_graph=True)\n"
    project.write("train.py", LOOP_WITHOUT_ZERO_GRAD)
    project.write("pkg/retain.py", retained)
    first = validate(gradlint("check", "--no-cache", "--output-format", "sarif").stdout)
    results = first["runs"][0]["results"]
    assert sorted(r["ruleId"] for r in results) == ["GL001", "GL002"]
    gl002 = next(r for r in results if r["ruleId"] == "GL002")
    assert gl002["fixes"][0]["artifactChanges"][0]["artifactLocation"]["uri"] == "pkg/retain.py"
    project.write("train.py", '"""Training script."""\n\n# setup\n' + LOOP_WITHOUT_ZERO_GRAD)
    project.write("pkg/retain.py", "# header\n" + retained)
    second = validate(gradlint("check", "--no-cache", "--output-format", "sarif").stdout)

    def prints(doc):
        return {r["ruleId"]: (r["partialFingerprints"]["gradlint/v1"],
                              r["locations"][0]["physicalLocation"]["region"]["startLine"])
                for r in doc["runs"][0]["results"]}

    before, after = prints(first), prints(second)
    assert before["GL001"][0] == after["GL001"][0] and after["GL001"][1] == before["GL001"][1] + 3
    assert before["GL002"][0] == after["GL002"][0] and after["GL002"][1] == before["GL002"][1] + 1
