"""`--output-format json`: a JSON array with one object per finding (Finding.to_json())."""

from __future__ import annotations

import json

from gradlint.findings import Finding
from gradlint.fingerprint import printable_path


def render(findings: list, ctx) -> str:
    """The findings as a JSON array, sorted, two-space indented, with a final newline."""
    ordered = sorted(findings, key=Finding.sort_key)
    rows = [f.to_json() for f in ordered]
    for row in rows:  # a file name that is not UTF-8: its bytes as \xNN, so the document is valid UTF-8
        row["path"] = printable_path(row["path"])
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
