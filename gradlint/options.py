"""What `gradlint check` and `gradlint run` share: the common click options, settings from them,
and `emit_report`, which renders findings in the chosen format and writes them out.

A command decorated with `@common_options` receives the keyword arguments `select`, `ignore`,
`extend_select`, `output_format`, `output`, `exit_zero`, `config` and `isolated`;
`settings_from_options(...)` turns them into `Settings` (or exits 2 with a one-line message) and
`emit_report(...)` writes the report and returns the exit status (0 or 1).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Any, Callable, Iterable, List, Mapping, NoReturn, Optional, Sequence

import click

from gradlint.findings import RULES, Finding

OUTPUT_FORMAT_ENV = "GRADLINT_OUTPUT_FORMAT"


def fail(message: str) -> NoReturn:
    """Stop with exit status 2 and one line on stderr (configuration, usage, internal errors)."""
    click.echo(f"gradlint: error: {message}", err=True)
    sys.exit(2)


def _format_names() -> List[str]:
    from gradlint.reporters import FORMATS

    return list(FORMATS)


def common_options(command: Callable) -> Callable:
    """Add --select/--ignore/--extend-select/--output-format/-o/--exit-zero/--config/--isolated."""
    decorators = [
        click.option("--select", multiple=True, metavar="CODES",
                     help="Rule codes or prefixes to enable (comma-separated, repeatable, or ALL); "
                          "replaces the configured selection."),
        click.option("--ignore", multiple=True, metavar="CODES",
                     help="Rule codes or prefixes to disable."),
        click.option("--extend-select", multiple=True, metavar="CODES",
                     help="Rule codes or prefixes to enable in addition to the selection."),
        click.option("--output-format", type=click.Choice(_format_names(), case_sensitive=False),
                     default=None,
                     help=f"Report format [default: full; github under GitHub Actions; env {OUTPUT_FORMAT_ENV}]."),
        click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                     help="Write the report to FILE instead of stdout."),
        click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings."),
        click.option("--config", type=click.Path(dir_okay=False), default=None,
                     help="Read settings from this TOML file instead of the nearest pyproject.toml."),
        click.option("--isolated", is_flag=True, help="Ignore every configuration file."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def cache_options(command: Callable) -> Callable:
    """Add --no-cache and --cache-dir (shared by `check` and `run`)."""
    command = click.option(
        "--cache-dir", type=click.Path(), default=None, envvar="GRADLINT_CACHE_DIR",
        help="Where the result cache lives [default: .gradlint_cache beside the config; env GRADLINT_CACHE_DIR].",
    )(command)
    return click.option("--no-cache", is_flag=True, envvar="GRADLINT_NO_CACHE",
                        help="Neither read nor write the result cache [env GRADLINT_NO_CACHE=1].")(command)


def cache_dir_override(cache_dir: Optional[str]) -> Optional[str]:
    """A cache folder named on the command line is relative to the current folder, not the config."""
    return os.path.abspath(cache_dir) if cache_dir else None


def cache_usable(settings, no_cache: bool) -> bool:
    """Whether to read and write the result cache: not with --no-cache, and not (with a one-line
    warning) when the configured cache path exists but is not a folder."""
    if no_cache:
        return False
    if os.path.exists(settings.cache_path) and not os.path.isdir(settings.cache_path):
        click.echo(f"gradlint: warning: cache dir {settings.cache_path} is not a folder; running without the cache",
                   err=True)
        return False
    return True


def _codes(values: Optional[Sequence[str]]) -> Optional[List[str]]:
    """Repeated/comma-separated option values, or None when the option was not given."""
    if not values:
        return None
    # A value with no code at all (`--select ""`) is kept so the config check rejects it.
    return [part for value in values for part in (value.split(",") if value.strip(" ,") else [value])
            if part.strip() or not value.strip(" ,")]


def settings_from_options(
    *,
    select: Optional[Sequence[str]] = None,
    ignore: Optional[Sequence[str]] = None,
    extend_select: Optional[Sequence[str]] = None,
    config: Optional[str] = None,
    isolated: bool = False,
    cwd: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    **_unused: Any,
):
    """Settings for a command: config file + command-line overrides. Exits 2 on a ConfigError."""
    from gradlint.config import ConfigError, load_settings

    cli: dict = {"select": _codes(select), "ignore": _codes(ignore), "extend-select": _codes(extend_select)}
    cli.update(overrides or {})
    try:
        return load_settings(cwd or os.getcwd(), config_file=config, isolated=isolated, overrides=cli)
    except ConfigError as err:
        fail(str(err))


def resolve_output_format(explicit: Optional[str], settings=None) -> str:
    """--output-format, else $GRADLINT_OUTPUT_FORMAT, else the config's output-format, else
    `github` when running under GitHub Actions, else `full`."""
    from gradlint.reporters import FORMATS

    if explicit:
        return explicit.lower()
    env = os.environ.get(OUTPUT_FORMAT_ENV, "").strip().lower()
    if env:
        if env not in FORMATS:
            fail(f"{OUTPUT_FORMAT_ENV}: unknown output format {env!r} (one of: {', '.join(FORMATS)})")
        return env
    if settings is not None and getattr(settings, "output_format", None):
        return settings.output_format
    if os.environ.get("GITHUB_ACTIONS", "").lower() == "true":
        return "github"
    return "full"


def statistics_text(findings: Iterable[Finding]) -> str:
    """One line per code: count, code, name, most frequent first (`--statistics`)."""
    counts = Counter(f.code for f in findings)
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    width = max((len(str(n)) for _, n in rows), default=1)
    return "".join(f"{n:>{width}}\t{code}\t{RULES[code].name if code in RULES else code}\n" for code, n in rows)


def statistics_json(findings: Iterable[Finding]) -> str:
    import json

    counts = Counter(f.code for f in findings)
    rows = [{"code": code, "name": RULES[code].name if code in RULES else code, "count": n}
            for code, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return json.dumps(rows, indent=2) + "\n"


def _write(text: str, output: Optional[str], to_stderr: bool = False, colour: bool = False) -> None:
    if output is None:
        # click strips ANSI codes from a stream that is not a terminal unless told otherwise
        keep = True if colour else None
        try:
            click.echo(text, nl=False, err=to_stderr, color=keep)
        except UnicodeEncodeError:  # an ASCII (or other narrow) terminal: escape what it cannot show
            stream = sys.stderr if to_stderr else sys.stdout
            encoding = getattr(stream, "encoding", None) or "ascii"
            click.echo(text.encode(encoding, "backslashreplace").decode(encoding), nl=False, err=to_stderr,
                       color=keep)
        return
    try:  # reporters escape odd file names; backslashreplace keeps any stray surrogate from failing
        with open(output, "w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
            handle.write(text)
    except OSError as err:
        fail(f"cannot write report to {output}: {err.strerror or err}")


def summary_line(findings: Sequence[Finding], files_checked: int, fixed: int = 0,
                 unsafe_fixes: bool = False, errors: int = 0) -> str:
    """The closing line on stderr: what was fixed, what was found (and, under `gradlint run`, how
    many of those the run refuted), and how many findings `--fix` (and `--unsafe-fixes`) would fix
    (a refuted finding is not offered a fix); never "All checks passed" after `errors`."""
    parts = []
    if fixed:
        parts.append(f"Fixed {fixed} finding{'s' if fixed != 1 else ''}.")
    if findings:
        files = len({f.path for f in findings})
        parts.append(
            f"Found {len(findings)} finding{'s' if len(findings) != 1 else ''} in {files} of "
            f"{files_checked} file{'s' if files_checked != 1 else ''}."
        )
        refuted = sum(1 for f in findings if f.runtime == "refuted")
        if refuted:
            parts.append(f"{refuted} of them refuted by the run (see each one's evidence).")
        fixes = [f.fix for f in findings if f.fix is not None and f.runtime != "refuted"]
        safe = sum(1 for fix in fixes if fix.applicability == "safe")
        unsafe = sum(1 for fix in fixes if fix.applicability == "unsafe")
        if unsafe_fixes:
            safe, unsafe = safe + unsafe, 0
        if safe:
            parts.append(f"{safe} fixable with `--fix`{' --unsafe-fixes' if unsafe_fixes else ''}.")
        if unsafe:
            parts.append(f"{unsafe} more fixable with `--unsafe-fixes --fix` (preview with `--diff --unsafe-fixes`).")
    elif not errors:
        parts.append(f"All checks passed ({files_checked} file{'s' if files_checked != 1 else ''}).")
    if errors:  # never "All checks passed" when a file could not be checked
        parts.append(f"{errors} file{'s' if errors != 1 else ''} could not be checked (see the errors below).")
    return " ".join(parts)


def use_colour(stream=None) -> bool:
    """Colour on a terminal: FORCE_COLOR (non-empty) forces it, NO_COLOR (non-empty) turns it off
    (https://no-color.org), TERM=dumb too; else only when `stream` (stdout) is a TTY."""
    if os.environ.get("FORCE_COLOR", ""):
        return True
    if os.environ.get("NO_COLOR", "") or os.environ.get("TERM") == "dumb":
        return False
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def emit_report(
    findings: Sequence[Finding],
    *,
    output_format: Optional[str] = None,
    output: Optional[str] = None,
    exit_zero: bool = False,
    settings=None,
    files_checked: int = 0,
    source_of: Optional[Callable[[str], Optional[str]]] = None,
    statistics: bool = False,
    quiet: bool = False,
    fixed: int = 0,
    cwd: Optional[str] = None,
    extra: Optional[dict] = None,
    to_stderr: bool = False,
    errors: int = 0,
    unsafe_fixes: bool = False,
) -> int:
    """Render `findings` (sorted here) in the resolved format, write them to `output` or stdout,
    print the summary line on stderr for the full format, and return the exit status: 1 when
    there are findings (unless `exit_zero`), else 0. `to_stderr` sends the report to stderr
    when no `output` file is given (stdin --fix: stdout carries the fixed source)."""
    from gradlint.reporters import ReportContext, renderer

    findings = sorted(findings, key=Finding.sort_key)
    name = resolve_output_format(output_format, settings)
    codes = settings.base_codes if settings is not None else {f.code for f in findings}
    rules = [RULES[code] for code in sorted(set(codes) | {f.code for f in findings}) if code in RULES]
    ctx = ReportContext(
        cwd=os.path.abspath(cwd or os.getcwd()),
        rules=rules,
        files_checked=files_checked,
        source_of=source_of or (lambda path: None),
        statistics=statistics,
        extra=dict(extra or {}),
    )
    if output is None and name in ("full", "concise"):
        ctx.extra.setdefault("colour", use_colour(sys.stderr if to_stderr else sys.stdout))
    if statistics and name in ("full", "concise"):
        text = statistics_text(findings)
    elif statistics and name == "json":
        text = statistics_json(findings)
    else:
        try:
            render = renderer(name)
        except (ImportError, AttributeError) as err:
            fail(f"output format {name!r} is not available: {err}")
        text = render(list(findings), ctx)
        if statistics:
            click.echo(statistics_text(findings), err=True, nl=False)
    _write(text, output, to_stderr, colour=bool(ctx.extra.get("colour")))
    if name == "full" and not quiet:
        click.echo(summary_line(findings, files_checked, fixed, unsafe_fixes, errors), err=True)
    return 0 if exit_zero or not findings else 1
