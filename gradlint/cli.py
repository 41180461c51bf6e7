"""The command line: `gradlint check`, `gradlint rules`, `gradlint explain`, `gradlint run`.

Exit status (DESIGN.md): 0 no findings, 1 findings (an unparsable file is one), 2 usage or
configuration error or an internal error. Bad input never produces a traceback: configuration
problems are one line on stderr, and a crash while checking one file is reported by name while
the others are still checked.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Tuple

import click

from gradlint import __version__
from gradlint.findings import RULES, Finding
from gradlint.rules import by_name_or_code
from gradlint.warm_record import active as recording, uncaptured
from gradlint.options import (
    cache_dir_override,
    cache_options,
    cache_usable,
    common_options,
    emit_report,
    fail,
    resolve_output_format,
    settings_from_options,
)

# Show a progress counter on a terminal only when the run is long enough to need one.
PROGRESS_MIN_FILES = 50


class _Group(click.Group):
    """A click group that turns an unexpected exception into one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # `gradlint check | head`
            sys.stderr.close()
            ctx.exit(1)
        except Exception as err:  # a gradlint bug: say so, no traceback
            click.echo(f"gradlint: error: internal error: {type(err).__name__}: {err}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gradlint", message="%(prog)s %(version)s")
def main() -> None:
    """gradlint: find gradient-hygiene bugs in PyTorch training loops before the run."""


# ---------------------------------------------------------------------------------------------
# check


class _Progress:
    """`files done/total` on stderr, rewritten in place; only on a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total >= PROGRESS_MIN_FILES and sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.enabled:
            stream = uncaptured(sys.stderr)  # it only redraws a line: not part of a warm-run manifest
            stream.write(f"\rgradlint: {done}/{total} files")
            stream.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            stream = uncaptured(sys.stderr)
            stream.write("\r\033[K")
            stream.flush()


def _read_text(path: str) -> Optional[str]:
    from gradlint.source import DecodeProblem, decode_source

    try:
        with open(path, "rb") as handle:
            return decode_source(handle.read())[0]
    except (OSError, DecodeProblem):
        return None


@main.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@common_options
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=0, show_default=False,
              help="Worker processes (default 0: all usable cores; 1 = serial).")
@cache_options
@click.option("--force-exclude", is_flag=True,
              help="Apply exclude/extend-exclude/.gitignore to paths named on the command line too.")
@click.option("--statistics", is_flag=True, help="Print the number of findings per rule instead of each finding.")
@click.option("--fix", is_flag=True, help="Apply the available safe fixes, then report what remains.")
@click.option("--unsafe-fixes", is_flag=True,
              help="Also apply and count the fixes that may change behaviour (each rule's page says which).")
@click.option("--diff", "show_diff", is_flag=True,
              help="Print the fixes as a unified diff and write nothing; exit 1 when there is something to fix.")
@click.option("--show-fixes", is_flag=True, help="List each fix applied (with --fix) or available (on stderr).")
@click.option("--exit-non-zero-on-fix", is_flag=True,
              help="With --fix: exit 1 when anything was fixed, even if no finding remains.")
@click.option("--exclude", multiple=True, metavar="PATTERNS",
              help="gitignore-style patterns to skip (comma-separated, repeatable); replaces the configured `exclude`.")
@click.option("--extend-exclude", multiple=True, metavar="PATTERNS",
              help="Patterns to skip in addition to the configured ones.")
@click.option("--add-noqa", is_flag=True,
              help="Add `# noqa: CODE` to every line with a finding (adopting gradlint on old code), then exit 0.")
@click.option("--stdin-filename", default=None, metavar="NAME",
              help="The name of the file read from stdin (`-`), for messages and per-file-ignores.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line and no progress on stderr.")
@click.option("--write-baseline", type=click.Path(dir_okay=False), default=None,
              help="Record today's findings in FILE (adopting gradlint on an existing codebase).")
@click.option("--baseline", type=click.Path(dir_okay=False), default=None,
              help="Report only findings that are not in the baseline FILE.")
def check(paths: Tuple[str, ...], select, ignore, extend_select, output_format, output, exit_zero, config,
          isolated, jobs, no_cache, cache_dir, force_exclude, statistics, fix, unsafe_fixes, show_diff, show_fixes,
          exit_non_zero_on_fix, exclude, extend_exclude, add_noqa, stdin_filename, quiet, write_baseline,
          baseline) -> None:
    """Lint files and folders (default: the current folder); `-` reads stdin."""
    from gradlint.config import ConfigError
    from gradlint.discovery import DiscoveryError, discover
    from gradlint.engine import lint_files

    recorder = recording()  # a warm-run manifest may be written for this run (gradlint/warm_record.py)
    if recorder is not None:
        recorder.snapshot(list(paths) or ["."])  # before any configuration is read
    overrides = {"force-exclude": True if force_exclude else None,
                 "cache-dir": cache_dir_override(cache_dir),
                 "exclude": _patterns(exclude), "extend-exclude": _patterns(extend_exclude)}
    settings = settings_from_options(select=select, ignore=ignore, extend_select=extend_select, config=config,
                                     isolated=isolated, overrides=overrides)
    fmt = resolve_output_format(output_format, settings)
    report = dict(output_format=fmt, output=output, exit_zero=exit_zero, settings=settings,
                  statistics=statistics, quiet=quiet, unsafe_fixes=unsafe_fixes)
    if add_noqa and (fix or show_diff or "-" in paths):
        fail("--add-noqa cannot be combined with --fix, --diff or stdin")
    fix = fix and not show_diff  # --diff previews: it never writes
    if "-" in paths:
        if len(paths) > 1:
            fail("`-` (stdin) cannot be combined with other paths")
        sys.exit(_check_stdin(settings, stdin_filename, fix, report, show_diff))
    try:
        files = discover(list(paths) or ["."], settings, trace=recorder.trace if recorder is not None else None)
        for path in files:  # nested configs: report a broken one now, before any linting
            settings.for_path(path)
    except (DiscoveryError, ConfigError) as err:
        fail(str(err))
    if not files:
        # Nothing to lint (pre-commit passed no Python file, or all were excluded): say so on
        # stderr (as ruff does); machine-readable reports are still written so CI gets a valid document.
        if not quiet:
            click.echo("gradlint: warning: No Python files found", err=True)
        if fmt not in ("full", "concise") or output:
            emit_report([], files_checked=0, **report)
        sys.exit(0)
    use_cache = cache_usable(settings, no_cache)
    progress = _Progress(len(files), enabled=not quiet)
    try:
        result = lint_files(files, settings, jobs=jobs, use_cache=use_cache, progress=progress)
    finally:
        progress.close()
    if add_noqa:
        sys.exit(_add_noqa(result, quiet, settings))
    if show_diff:
        sys.exit(_diff(result, unsafe_fixes, quiet))
    if show_fixes and not fix:
        _list_fixes("Fixes available", [f for f in result.findings if fixable(f, unsafe_fixes)])
    fixed = 0
    if fix:
        fixed, result = _apply_fixes(result, settings, jobs=jobs, use_cache=use_cache, unsafe=unsafe_fixes,
                                     show=show_fixes)
    findings = _baseline(result, write_baseline, baseline)
    sources: Dict[str, Optional[str]] = {}

    def source_of(path: str) -> Optional[str]:
        if path not in sources:
            sources[path] = _read_text(result.paths.get(path, path))
        return sources[path]

    status = emit_report(findings, files_checked=result.files_checked, source_of=source_of, fixed=fixed,
                         extra=_report_extra(result), errors=len(result.errors), **report)
    for error in result.errors:
        click.echo(f"gradlint: error: {error}", err=True)
    if fixed and exit_non_zero_on_fix:
        status = 1
    if recorder is not None and use_cache and not (fix or write_baseline or baseline or output or fmt == "github"):
        recorder.note(list(paths) or ["."], files, settings, result)
    sys.exit(2 if result.errors else status)


def _patterns(values: Tuple[str, ...]) -> Optional[List[str]]:
    """Repeated/comma-separated pattern options, or None when not given."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def fixable(finding: Finding, unsafe: bool) -> bool:
    """Would `--fix` (with `--unsafe-fixes` when `unsafe`) apply this finding's fix?"""
    info = RULES.get(finding.code)
    if finding.fix is None or info is None or not info.fixable:
        return False
    return finding.fix.applicability == "safe" or unsafe


def _list_fixes(title: str, findings: List[Finding]) -> None:
    from gradlint.reporters.text import fix_line, location

    if not findings:
        return
    click.echo(f"{title}:", err=True)
    for finding in sorted(findings, key=Finding.sort_key):
        click.echo(f"  {location(finding)}: {finding.code} {fix_line(finding)}", err=True)


def _diff(result, unsafe: bool, quiet: bool) -> int:
    """--diff: the unified diff `--fix` would write, on stdout; nothing is written. Exit 1 when
    there is something to fix (2 if the run had internal errors)."""
    import difflib

    from gradlint.fixes import apply_fixes
    from gradlint.notebook import is_notebook

    by_file: Dict[str, List[Finding]] = {}
    for finding in result.findings:
        if fixable(finding, unsafe):
            by_file.setdefault(finding.path, []).append(finding)
    would = files = 0
    for shown, findings in sorted(by_file.items()):
        path = result.paths.get(shown, shown)
        text = None if is_notebook(path) else _read_text(path)
        if text is None:
            continue
        new_text, count = apply_fixes(text, findings)
        if not count or new_text == text:
            continue
        would += count
        files += 1
        click.echo("".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                                fromfile=f"a/{shown}", tofile=f"b/{shown}")), nl=False)
    if not quiet:
        click.echo(f"Would fix {would} finding{'s' if would != 1 else ''} in {files} file{'s' if files != 1 else ''}."
                   if would else "No fixes available.", err=True)
    for error in result.errors:
        click.echo(f"gradlint: error: {error}", err=True)
    return 2 if result.errors else 1 if would else 0


def _report_extra(result) -> dict:
    extra: dict = {"cache_hits": result.cache_hits}
    if not any(p.lower().endswith(".ipynb") for p in result.paths.values()):
        return extra  # no notebook linted: do not import the notebook module
    try:  # notebook excerpts: the notebook module knows how to find a cell's text
        from gradlint import notebook  # noqa: F401

        cell_source = getattr(notebook, "cell_source", None)
        if cell_source is not None:
            extra["cell_source"] = lambda path, cell: cell_source(result.paths.get(path, path), cell)
    except ImportError:
        pass
    return extra


def _baseline(result, write_to: Optional[str], compare_with: Optional[str]) -> List[Finding]:
    """--write-baseline records every finding (none is then reported); --baseline keeps only the
    findings beyond the recorded counts and says on stderr how many were matched and fixed."""
    findings = result.findings
    if not write_to and not compare_with:
        return findings
    from gradlint.baseline import BaselineError, filter_new, write_baseline

    def source_of(path: str) -> Optional[str]:
        return _read_text(result.paths.get(path, path))

    try:
        if compare_with:
            findings, stats = filter_new(findings, source_of, compare_with, checked=set(result.paths))
            click.echo(f"gradlint: {stats.describe()}", err=True)
        if write_to:
            count = write_baseline(result.findings, source_of, write_to)
            click.echo(f"gradlint: wrote {count} finding{'s' if count != 1 else ''} to baseline {write_to}", err=True)
            return []
    except BaselineError as err:
        fail(str(err))
    return findings


def _check_stdin(settings, stdin_filename: Optional[str], fix: bool, report: dict, show_diff: bool = False) -> int:
    """Lint the source on stdin under the name `--stdin-filename` (default `-`)."""
    from gradlint.discovery import Excluder
    from gradlint.engine import InternalError, lint_bytes
    from gradlint.source import DecodeProblem, decode_source
    from gradlint.config import ConfigError

    name = stdin_filename or "-"
    data = sys.stdin.buffer.read()
    if stdin_filename:
        try:
            settings = settings.for_path(name)
        except ConfigError as err:
            fail(str(err))
    if stdin_filename and settings.force_exclude and Excluder(settings).excluded_with_parents(name, False):
        if fix:
            sys.stdout.buffer.write(data)
        return 0
    try:
        findings = lint_bytes(data, name, settings)
    except InternalError as err:
        fail(str(err))
    try:
        text = decode_source(data)[0]
    except DecodeProblem:
        text = None
    fixed = 0
    unsafe = bool(report.get("unsafe_fixes"))
    if show_diff:
        import difflib

        from gradlint.fixes import apply_fixes

        if text is None:
            return 0
        new_text = apply_fixes(text, [f for f in findings if fixable(f, unsafe)])[0]
        if new_text == text:
            return 0
        click.echo("".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                                fromfile=f"a/{name}", tofile=f"b/{name}")), nl=False)
        return 1
    if fix:
        # Like ruff: the fixed source goes to stdout (as bytes: the file's own encoding, BOM and
        # line endings; the bytes outside the edits unchanged), the remaining findings to stderr.
        out = data
        if text is not None:
            from gradlint.fixes import choose_fixes, edit_bytes
            from gradlint.source import admission_problem

            edits, count = choose_fixes(text, [f for f in findings if fixable(f, unsafe)])
            if count:
                try:
                    new_data, new_text = edit_bytes(data, edits)
                except ValueError as err:
                    click.echo(f"gradlint: warning: {name}: fixes not applied: {err}", err=True)
                else:
                    if admission_problem(new_text, name) is None:
                        out, text, fixed = new_data, new_text, count
                        findings = lint_bytes(new_data, name, settings)
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
        report = dict(report, to_stderr=True)
    return emit_report(findings, files_checked=1, source_of=lambda path: text, fixed=fixed, **report)


def _by_real_file(result, wanted) -> List[Tuple[str, str, List[Finding]]]:
    """(display path, path, findings) per file on disk: two names of one file (a symlink and its
    target, hard links) are rewritten once, from the findings of the first name, so a second
    rewrite is never computed on bytes the first already changed."""
    by_file: Dict[str, List[Finding]] = {}
    for finding in result.findings:
        if wanted(finding):
            by_file.setdefault(finding.path, []).append(finding)
    out = []
    seen = set()
    for shown, findings in sorted(by_file.items()):
        path = result.paths.get(shown, shown)
        try:
            st = os.stat(path)
            identity: object = (st.st_dev, st.st_ino)
        except OSError:
            identity = os.path.realpath(path)
        if identity in seen:
            continue
        seen.add(identity)
        out.append((shown, path, findings))
    return out


def _relinter(path: str, settings, keep=None):
    """Fresh findings for a file's current bytes (it changed since it was linted, or its
    findings came from the cache and fixes must not be taken from there); only those `keep`
    accepts (the fixes --fix may apply)."""
    from gradlint.engine import lint_bytes

    return lambda data: [f for f in lint_bytes(data, path, settings) if keep is None or keep(f)]


def _add_noqa(result, quiet: bool, settings) -> int:
    """--add-noqa: annotate every finding's line; exit 0, 1 when some lines or files could not
    be annotated (their findings remain), 2 if the run had internal errors."""
    from gradlint.fixes import RewriteSkipped, add_noqa_file

    added = 0
    failed = 0
    for shown, path, findings in _by_real_file(result, lambda f: True):
        try:
            added += add_noqa_file(path, findings, digest=result.digests.get(shown),
                                   relint=_relinter(path, settings))
        except RewriteSkipped as err:
            failed += 1
            added += getattr(err, "written", 0)
            click.echo(f"gradlint: warning: {shown}: {err}", err=True)
        except (ValueError, OSError) as err:
            failed += 1
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            click.echo(f"gradlint: warning: {shown}: noqa directives not added: {reason}", err=True)
    if not quiet:
        click.echo(f"Added {added} noqa directive{'s' if added != 1 else ''}.", err=True)
    for error in result.errors:
        click.echo(f"gradlint: error: {error}", err=True)
    # A file that could not be annotated (read-only, changed meanwhile) still has its findings.
    return 2 if result.errors else 1 if failed else 0


def _apply_fixes(result, settings, *, jobs: int, use_cache: bool, unsafe: bool = False, show: bool = False):
    """Apply fixes file by file, each onto the bytes it was computed from (atomic write, only if
    the result still parses; a file changed since is re-linted and fixed from its new content);
    fixes are never taken from the cache (they are recomputed); relint the changed files.
    Unsafe fixes only with `unsafe`; `show` lists what was applied."""
    from gradlint.engine import lint_files
    from gradlint.fixes import fix_file

    def wanted(finding: Finding) -> bool:
        return fixable(finding, unsafe)

    applied: List[Finding] = []
    fixed = 0
    changed: List[str] = []
    for shown, path, findings in _by_real_file(result, wanted):
        relint = _relinter(path, settings, wanted)
        digest = result.digests.get(shown)
        if shown in result.cached:
            digest = "recompute"  # never matches: fixes come from a fresh lint of the current bytes
        try:
            count = fix_file(path, findings, digest=digest, relint=relint)
        except ValueError as err:
            click.echo(f"gradlint: warning: {shown}: fixes not applied: {err}", err=True)
            continue
        except OSError as err:
            click.echo(f"gradlint: warning: {shown}: cannot write fixes: {err.strerror or err}", err=True)
            continue
        if count:
            fixed += count
            changed.append(path)
            applied.extend(findings)
    if show:
        _list_fixes("Fixes applied", applied)
    if changed:
        again = lint_files(sorted(set(result.paths.values()) & _same_files(changed, result)), settings,
                           jobs=jobs, use_cache=use_cache)
        redone = {p for p in again.paths}
        keep = [f for f in result.findings if f.path not in redone]
        result.findings = sorted(keep + again.findings, key=Finding.sort_key)
        result.errors = [e for e in result.errors] + again.errors
    return fixed, result


def _same_files(changed: List[str], result) -> set:
    """Every linted path naming one of the `changed` files (a symlink and its target)."""
    def identity(path: str) -> object:
        try:
            st = os.stat(path)
            return (st.st_dev, st.st_ino)
        except OSError:
            return os.path.realpath(path)

    wanted = {identity(p) for p in changed}
    return {p for p in result.paths.values() if identity(p) in wanted}


# ---------------------------------------------------------------------------------------------
# rules, explain


@main.command("rules")
@click.option("--output-format", type=click.Choice(["text", "json"]), default="text", help="Table or JSON.")
def rules_command(output_format: str) -> None:
    """List the rules: code, name, what it finds, fixable, on by default."""
    if output_format == "json":
        import json

        records = [{"code": r.code, "name": r.name, "summary": r.summary, "fixable": r.fixable,
                    "default_on": r.default_on, "severity": r.severity} for r in RULES.values()]
        click.echo(json.dumps(records, indent=2))
        return
    header = ("code", "name", "severity", "fix", "default", "what it finds")
    rows = [(r.code, r.name, r.severity, r.fix or "-", "on" if r.default_on else "off", r.summary)
            for r in RULES.values()]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(5)]
    for row in [header] + rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])


def _rule_page(code: str) -> Optional[str]:
    """The rule's markdown page (see gradlint.pages)."""
    from gradlint.pages import rule_page

    return rule_page(code)


@main.command("explain")
@click.argument("code")
def explain(code: str) -> None:
    """Print a rule's page: `gradlint explain GL001` (or its name, missing-zero-grad)."""
    wanted = code.strip()
    info = by_name_or_code(wanted)
    if info is None:
        fail(f"unknown rule {code!r} (see `gradlint rules`)")
    page = _rule_page(info.code)
    if page is None:
        page = f"# {info.code} {info.name}\n\n{info.summary}\n"
    click.echo(page, nl=not page.endswith("\n"))


# ---------------------------------------------------------------------------------------------
# server


@main.command("server")
def server_command() -> None:
    """Run the Language Server over stdio (for editors): diagnostics and quick fixes as you type."""
    try:
        from gradlint.server import main as serve
    except ImportError as err:
        fail(f"`gradlint server` needs pygls and lsprotocol ({err}); install them with: "
             "pip install 'torch-gradlint[lsp]'")
    serve()


# ---------------------------------------------------------------------------------------------
# run (the runtime tracer lives in gradlint.runtime.cli and must not import torch at import time)

def _runtime_command() -> Optional[click.Command]:
    try:
        from gradlint.runtime.cli import run_command
    except ImportError:  # the runtime part is optional; `check` works without it
        return None
    return run_command


_RUN = _runtime_command()
if _RUN is not None:
    main.add_command(_RUN, "run")
