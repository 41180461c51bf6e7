"""The rule catalogue says what the linter does: every page and every runnable example is checked.

* every declared rule (gradlint/rules/glNNN.py) has its page rules/GLNNN.md, with the sections
  every page must have, in order, and every page belongs to a declared rule;
* every ```python block under "Example" is reported with the page's code, and every block under
  "Use instead" is not;
* every rule has runnable examples, rules/examples/GLNNN_bad_*.py reported with its code and
  GLNNN_good_*.py not (except parse-error: an unparsable file would break every other tool that
  reads the repository; its page's blocks are checked instead).
All of it goes through the engine (tests/harness.py), as `gradlint check` runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradlint.findings import RULES
from harness import checked_codes, lint

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
EXAMPLES_DIR = RULES_DIR / "examples"

SECTIONS = [
    "What it does",
    "Why is this bad?",
    "Example",
    "Use instead",
    "How the runtime hook confirms it",
    "Known limits",
]

PAGES = sorted(RULES_DIR.glob("GL[0-9][0-9][0-9].md"))
EXAMPLES = sorted(EXAMPLES_DIR.glob("GL[0-9][0-9][0-9]_*.py"))


def sections(text: str) -> dict:
    """Level-2 heading -> the text under it, in page order."""
    out: dict = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"^##\s+(.*?)\s*$", line)
        if heading:
            current = heading.group(1)
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {name: "\n".join(lines) for name, lines in out.items()}


def python_blocks(text: str) -> list:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def codes_in(source: str, code: str, path: str = "example.py") -> list:
    """The findings of `code` on `source`; a rule that must see every rule's findings (unused
    noqa) runs with all of them selected."""
    selected = [code] + (checked_codes() if RULES[code].needs.all_rules else [])
    return [f.code for f in lint(source, path, selected, dedent=False) if f.code == code]


def test_every_declared_rule_has_a_page_and_every_page_a_rule():
    assert sorted(p.stem for p in PAGES) == sorted(RULES)


@pytest.mark.parametrize("code", [c for c, r in RULES.items() if r.role != "parse-error"])
def test_every_rule_has_bad_and_good_examples(code):
    names = [p.name for p in EXAMPLES if p.name.startswith(code + "_")]
    assert any("_bad_" in n for n in names), f"{code}: no rules/examples/{code}_bad_*.py"
    assert any("_good_" in n for n in names), f"{code}: no rules/examples/{code}_good_*.py"


def page_blocks(kind: str):
    """(page code, block index, source) for every python block under `kind` in every rule page."""
    cases = []
    for page in PAGES:
        code = page.stem
        if code not in RULES:
            continue
        text = sections(page.read_text(encoding="utf-8")).get(kind, "")
        for index, block in enumerate(python_blocks(text)):
            cases.append(pytest.param(code, block, id=f"{code}-{kind.split()[0].lower()}-{index}"))
    return cases


def test_there_are_pages_and_examples():
    assert [p.stem for p in PAGES if p.stem in RULES], "no rule pages found"
    assert EXAMPLES, "no runnable examples found"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_has_required_sections(page):
    found = list(sections(page.read_text(encoding="utf-8")))
    missing = [name for name in SECTIONS if name not in found]
    assert not missing, f"{page.name} lacks sections {missing}"
    assert [name for name in found if name in SECTIONS] == SECTIONS, f"{page.name}: sections out of order"
    assert page.read_text(encoding="utf-8").startswith(f"# {page.stem}")


@pytest.mark.parametrize("page", [p for p in PAGES if p.stem in RULES], ids=lambda p: p.stem)
def test_page_has_flagged_and_clean_blocks(page):
    parts = sections(page.read_text(encoding="utf-8"))
    assert python_blocks(parts.get("Example", "")), f"{page.name}: no python block under Example"
    assert python_blocks(parts.get("Use instead", "")), f"{page.name}: no python block under Use instead"


@pytest.mark.parametrize("code,source", page_blocks("Example"))
def test_example_block_is_flagged(code, source):
    assert codes_in(source, code), f"{code} page example is not reported:\n{source}"


@pytest.mark.parametrize("code,source", page_blocks("Use instead"))
def test_use_instead_block_is_clean(code, source):
    assert codes_in(source, code) == [], f"{code} page 'Use instead' block is reported:\n{source}"


def _example_code(path: Path) -> str:
    return path.name[:5]


@pytest.mark.parametrize("path", [p for p in EXAMPLES if "_bad_" in p.name], ids=lambda p: p.stem)
def test_bad_example_is_flagged(path):
    code = _example_code(path)
    assert code in RULES, f"{path.name}: no rule {code}"
    assert codes_in(path.read_text(encoding="utf-8"), code, str(path)), f"{path.name} is not reported with {code}"


@pytest.mark.parametrize("path", [p for p in EXAMPLES if "_good_" in p.name], ids=lambda p: p.stem)
def test_good_example_is_clean(path):
    code = _example_code(path)
    assert code in RULES, f"{path.name}: no rule {code}"
    assert codes_in(path.read_text(encoding="utf-8"), code, str(path)) == [], f"{path.name} is reported with {code}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_names_follow_the_convention(path):
    assert re.fullmatch(r"GL\d{3}_(bad|good)_[a-z0-9_]+\.py", path.name), path.name
