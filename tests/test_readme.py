"""README's rule table is the rule declarations: every rule, with its name, severity and fix tier."""

from __future__ import annotations

import re
from pathlib import Path

from gradlint.findings import RULES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _rows() -> dict:
    rows = {}
    for line in README.splitlines():
        match = re.match(r"^\| (GL\d{3}) \| ([a-z-]+) \| ([^|]+) \|[^|]*\| ([^|]*) \|$", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3).strip(), match.group(4).strip())
    return rows


def test_every_declared_rule_has_a_row_that_agrees_with_its_declaration():
    rows = _rows()
    assert set(rows) == set(RULES)
    for code, rule in RULES.items():
        name, severity, fix = rows[code]
        assert name == rule.name
        assert severity.split()[0] == rule.severity
        assert ("off by default" in severity) == (not rule.default_on)
        assert fix == (rule.fix or "")
