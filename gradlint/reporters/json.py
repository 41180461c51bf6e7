"""`--output-format json`: a JSON array with one object per finding (Finding.to_json())."""

from __future__ import annotations

import json

from gradlint.findings import Finding


def render(findings: list, ctx) -> str:
    """The findings as a JSON array, sorted, two-space indented, with a final newline."""
    ordered = sorted(findings, key=Finding.sort_key)
    return json.dumps([f.to_json() for f in ordered], indent=2, ensure_ascii=False) + "\n"
