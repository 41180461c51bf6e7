"""The rule declarations are the one source of truth: the registry finds every rule module by its
name, and the rule table, SARIF metadata, GitLab categories, runtime judges and prefilter all say
what the declarations say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradlint.findings import Finding
from gradlint.rules import RULES, Needs, Rule, checks_for, parse_error, unused_noqa

ROOT = Path(__file__).resolve().parent.parent
RULES_PACKAGE = ROOT / "gradlint" / "rules"


def test_every_rule_module_is_found_and_named_after_its_code():
    modules = sorted(p.stem.upper() for p in RULES_PACKAGE.glob("gl[0-9][0-9][0-9].py"))
    assert modules == sorted(RULES) and modules, (modules, list(RULES))
    assert list(RULES) == sorted(RULES)  # the table is in code order


def test_declarations_are_valid():
    names = [r.name for r in RULES.values()]
    assert len(set(names)) == len(names)
    for rule in RULES.values():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule.name), rule.name
        assert rule.summary and "\n" not in rule.summary
        assert (rule.check is None) == (rule.role is not None), rule.code
    assert parse_error().check is None and unused_noqa().check is None
    with pytest.raises(ValueError):
        Rule(code="GL1", name="x", summary="x")
    with pytest.raises(ValueError):
        Rule(code="GL901", name="x", summary="x", fix="maybe")


def test_rules_command_and_sarif_and_gitlab_derive_from_the_declarations(project, gradlint):
    listed = json.loads(gradlint("rules", "--output-format", "json").stdout)
    assert [(r["code"], r["name"], r["severity"], r["fixable"], r["default_on"]) for r in listed] == [
        (r.code, r.name, r.severity, r.fixable, r.default_on) for r in RULES.values()]

    from gradlint.reporters.gitlab import issue
    from gradlint.reporters.sarif import rule_descriptor

    for rule in RULES.values():
        descriptor = rule_descriptor(rule, "https://example.org")
        assert descriptor["properties"]["tags"] == list(rule.tags)
        finding = Finding(rule.code, "m", "a.py", 1, 1, 1, 2)

        class Lines:
            def notebook(self, path):
                return None

        assert issue(finding, "f", str(project.root), Lines())["categories"] == [rule.gitlab_category]


def test_runtime_judges_come_from_the_declarations():
    from gradlint.runtime.verdicts import runtime_codes

    assert runtime_codes() == tuple(c for c, r in RULES.items() if r.judge is not None)
    assert runtime_codes(), "no rule declares a runtime judge"


def test_checks_come_from_the_declarations():
    assert checks_for() == [r.check for r in RULES.values() if r.check is not None]
    assert checks_for([parse_error().code]) == []


def test_a_rule_without_staged_needs_admits_on_words():
    needs = Needs(words=("noqa",), fold_case=True, all_rules=True)
    assert unused_noqa().needs == needs


def test_declarations_import_without_libcst_or_torch():
    code = ("import sys\nfrom gradlint.rules import RULES\n"
            "rules = list(RULES.values())\n"
            "assert 'libcst' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
            "print(len(rules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(RULES)

