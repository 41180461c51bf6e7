"""One way for tests to lint code: the path `gradlint check` takes (settings, prefilter, parse,
facts, rules, noqa, selection), so a prefilter can never hide what a rule finds without a test
noticing. Rule, corpus and catalogue tests use `lint`; none calls the analysis directly.
"""

from __future__ import annotations

import tempfile
import textwrap
from typing import Iterable, List, Optional, Sequence

from gradlint.config import load_settings
from gradlint.engine import lint_source
from gradlint.findings import RULES, Finding

_EMPTY_ROOT: List[str] = []


def _empty_root() -> str:
    """A project folder with nothing in it (so no test sees the repository's files as helpers)."""
    if not _EMPTY_ROOT:
        _EMPTY_ROOT.append(tempfile.mkdtemp(prefix="gradlint-harness-"))
    return _EMPTY_ROOT[0]


def checked_codes() -> List[str]:
    """Every code whose rule has a check (the codes rule tests exercise)."""
    return [code for code, rule in RULES.items() if rule.check is not None]


def lint(
    source: str,
    path: str = "train.py",
    codes: Optional[Iterable[str]] = None,
    *,
    root: Optional[str] = None,
    dedent: bool = True,
    backward_functions: Sequence[str] = (),
    step_functions: Sequence[str] = (),
    clear_functions: Sequence[str] = (),
    only: bool = True,
) -> List[Finding]:
    """Findings for `source` as file `path` under project folder `root` (default: an empty
    folder), with only `codes` selected (default: every rule with a check) and the given helper
    settings, through the engine. Parse errors are always selected; with `only`, just the
    findings of `codes` (and parse errors) are returned."""
    selected = list(codes) if codes is not None else checked_codes()
    overrides = {"select": selected}
    for key, value in (("backward-functions", backward_functions), ("step-functions", step_functions),
                       ("clear-functions", clear_functions)):
        if value:
            overrides[key] = list(value)
    settings = load_settings(root or _empty_root(), isolated=True, overrides=overrides)
    text = textwrap.dedent(source) if dedent else source
    found = lint_source(text, path, settings)
    if only:
        keep = set(selected) | {code for code, rule in RULES.items() if rule.role == "parse-error"}
        found = [f for f in found if f.code in keep]
    return found


def codes_of(findings: Iterable[Finding]) -> List[str]:
    return [f.code for f in findings]


def lint_options(source: str, path: str, options=None, codes: Optional[Iterable[str]] = None) -> List[Finding]:
    """`lint` with the settings an `AnalysisOptions` describes (project_root is the project
    folder; helper names the configured helpers); the source is taken as it is."""
    if options is None:
        return lint(source, path, codes, dedent=False)
    return lint(source, path, codes, root=options.project_root, dedent=False,
                backward_functions=options.backward_functions, step_functions=options.step_functions,
                clear_functions=options.clear_functions)


def syntax_error_at(source: str) -> str:
    """`line:column:` where the running CPython puts the syntax error of `source` (GL000 reports
    CPython's position, which moved between versions: 3.9 reports an unclosed `(` at the end of the
    file, 3.10+ at the bracket)."""
    try:
        compile(source, "<test>", "exec")
    except SyntaxError as err:
        return f"{err.lineno}:{err.offset}:"
    raise AssertionError("source compiles")


def marked_lines(source: str, code: str) -> List[int]:
    """Lines of `source` ending in a `# GLnnn` comment for `code`: where a test expects findings."""
    return [n for n, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# " + code)]


def lint_project(root, files: dict, main: str, code: str):
    """Write `files` (name -> dedented text) under folder `root`, lint `main` there as part of that
    project with only `code` selected; returns (main's text, its findings)."""
    from gradlint.analysis import AnalysisOptions

    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    source = (root / main).read_text()
    return source, lint_options(source, str(root / main), AnalysisOptions(project_root=str(root)), codes=[code])
