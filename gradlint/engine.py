"""The lint engine, a straight pipeline: files -> source -> prefilter -> facts -> rules -> findings.

- source (gradlint/source.py): bytes are decoded as Python does; a file that cannot be decoded or
  parsed gives one parse-error finding and the other files are still linted. Notebooks
  (gradlint/notebook.py) hand over their joined program and a cell map.
- prefilter (gradlint/prefilter.py): a file no selected rule's declared needs admit is not parsed
  at all, not even for a syntax error: it cannot hold a finding (GL000 is reported for the files
  the prefilter lets through, for undecodable files, and for every file when GL000 is the only
  rule selected).
- facts and rules (gradlint/analysis/, gradlint/rules/): one parse, one per-file context, the
  selected rules' checks.
- findings: select/ignore, noqa (gradlint/suppression.py), sorted.
Many files run over a process pool (gradlint/pool.py); per-file results may come from the
content-keyed cache (gradlint/cache.py). Fixes and noqa rewriting live in gradlint/fixes.py.

An unexpected exception inside the analysis of one file is reported as an error naming the file
(the CLI exits 2 at the end) and never stops the other files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gradlint import pool
from gradlint.analysis.imports import forget_files
from gradlint.discovery import forget_listings
from gradlint.findings import RULES, Finding
from gradlint.paths import display_path
from gradlint.prefilter import forget_answers, names_a_word, prefilter
from gradlint.rules import checks_for
from gradlint.source import (DecodeProblem, admit, decode_source, deep_call, gl000, libcst_view, parse_error_of,
                             size_problem, syntax_check)

__all__ = ["InternalError", "LintResult", "analyse_text", "finish", "lint_source", "lint_bytes", "lint_files",
           "display_path", "DecodeProblem", "decode_source"]


class InternalError(Exception):
    """The analysis crashed on one file (a gradlint bug); carries the file and the cause."""

    def __init__(self, path: str, cause: BaseException) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"internal error while checking {path}: {type(cause).__name__}: {cause}")


@dataclass
class LintResult:
    findings: List[Finding] = field(default_factory=list)  # sorted by Finding.sort_key
    files_checked: int = 0
    errors: List[str] = field(default_factory=list)  # one line each: internal errors, unreadable files
    cache_hits: int = 0
    # display path -> the path the file was read from (for source excerpts and --fix)
    paths: Dict[str, str] = field(default_factory=dict)
    # display path -> SHA-256 of the bytes the findings were computed from (--fix writes only onto them)
    digests: Dict[str, str] = field(default_factory=dict)
    cached: set = field(default_factory=set)  # display paths whose findings came from the cache
    # the other files the findings depend on (helper modules, callers read), as the result cache
    # records them; None once a file's are unknown (no cache, or they could not be recorded)
    dependencies: Optional[set] = field(default_factory=set)


# ---------------------------------------------------------------------------------------------
# One file


def _rule_codes(enabled: Sequence[str]) -> List[str]:
    """The enabled codes that have a check (the others are reported by the engine itself)."""
    return sorted(code for code in enabled if code in RULES and RULES[code].check is not None)


def analyse_text(text: str, path: str, settings: Any, enabled: set, data: Optional[bytes] = None) -> List[Finding]:
    """Findings for decoded text (display `path`), before suppression. Raises InternalError."""
    codes = _rule_codes(sorted(enabled))
    too_large = size_problem(text)  # before any parser runs, CPython's included
    if not codes:  # only parse errors asked for (`--select GL000`): nothing to prefilter against
        problem = gl000(path, too_large) if too_large is not None else syntax_check(text, path)
        return [problem] if problem is not None else []
    if too_large is not None:
        # Stage two's compile must not see it either; a file naming no rule's word still cannot
        # hold a finding, so only the others get the GL000.
        return [gl000(path, too_large)] if names_a_word(text, settings, enabled) else []
    possible, compiled = prefilter(text, data, path, settings, enabled)
    if not possible:
        # No finding is possible, so the file is not parsed just to report a syntax error
        # (ruff and flake8 report those): GL000 covers the files the prefilter lets through.
        return []
    problem = admit(text, path, check_python=not compiled)  # LibCST never sees what CPython rejects
    if problem is not None:
        return [problem]
    import libcst

    from gradlint.analysis import analyze

    try:
        with pool.large_item(len(text)):  # never two such trees at once in a pool (may raise pool.Later)
            view = libcst_view(text)  # same offsets; lines numbered as CPython numbers them
            return deep_call(lambda: list(analyze(view, path, settings.analysis_options, checks_for(codes))))
    except libcst.ParserSyntaxError as err:
        return [parse_error_of(err, text, path)]
    except RecursionError as err:  # deeper than the guard measured: this file only
        return [gl000(path, f"too deep to analyse ({type(err).__name__})")]
    except MemoryError:
        return [gl000(path, "too large to analyse (out of memory)")]
    except Exception as err:  # a bug in a rule or the analysis: report it, keep going
        raise InternalError(path, err) from err
    finally:
        if len(text) >= pool.RELEASE_AFTER_CHARS:
            pool.release_memory()


def finish(findings: List[Finding], text: str, path: str, enabled: set) -> List[Finding]:
    """Keep enabled codes (parse errors only if enabled), apply noqa, sort."""
    from gradlint import suppression

    findings = [f for f in findings if f.code in enabled]
    findings = suppression.apply(findings, text, enabled, path)
    findings = [f for f in findings if f.code in enabled]
    return sorted(findings, key=Finding.sort_key)


def lint_source(text: str, path: str, settings: Any) -> List[Finding]:
    """Findings for one file's text: select/ignore/per-file-ignores and noqa applied; a parse
    error when it does not parse. `path` names the file (for per-file-ignores and imports);
    findings carry its display path. Raises InternalError if the analysis crashes."""
    shown = display_path(path)
    settings = settings.for_path(path) if hasattr(settings, "for_path") else settings
    enabled = settings.enabled_codes(path)
    return finish(analyse_text(text, shown, settings, enabled), text, shown, enabled)


def lint_bytes(data: bytes, path: str, settings: Any, enabled: Optional[set] = None) -> List[Finding]:
    """Like lint_source, from the file's bytes (decoding problems are parse errors)."""
    from gradlint.notebook import is_notebook

    shown = display_path(path)
    if enabled is None:
        settings = settings.for_path(path) if hasattr(settings, "for_path") else settings
        enabled = settings.enabled_codes(path)
    if is_notebook(path):
        return _lint_notebook(data, shown, settings, enabled)
    try:
        text, _ = decode_source(data)
    except DecodeProblem as problem:
        return finish([gl000(shown, problem.message, problem.line, problem.column)], "", shown, enabled)
    return finish(analyse_text(text, shown, settings, enabled, data), text, shown, enabled)


def _lint_notebook(data: bytes, shown: str, settings: Any, enabled: set) -> List[Finding]:
    """A notebook: its joined code cells linted as one program (same analysis, suppression and
    selection as a .py file), then every finding moved into cell coordinates."""
    from gradlint.notebook import NotebookError, load_notebook

    try:
        notebook = load_notebook(data)
    except NotebookError as err:
        return finish([gl000(shown, str(err), err.line, err.column)], "", shown, enabled)
    if not notebook.program.strip():
        return []
    findings = finish(analyse_text(notebook.program, shown, settings, enabled), notebook.program, shown, enabled)
    return sorted((notebook.to_cells(f) for f in findings), key=Finding.sort_key)


def _program_text(data: bytes, path: str) -> Optional[str]:
    """The decoded program of a file (None when it cannot be decoded): what cached fix edits
    and positions are checked against."""
    from gradlint.notebook import is_notebook, load_notebook

    try:
        if is_notebook(path):
            return load_notebook(data).program
        return decode_source(data)[0]
    except Exception:
        return None


def _program_bytes(data: bytes, path: str) -> bytes:
    """The Python program of a file, as bytes: a notebook's joined code cells, else the file."""
    from gradlint.notebook import is_notebook, load_notebook

    if not is_notebook(path):
        return data
    try:
        return load_notebook(data).program.encode("utf-8", "surrogatepass")
    except Exception:  # not a readable notebook: it has no helpers to track
        return b""


# ---------------------------------------------------------------------------------------------
# Many files


@dataclass
class _Outcome:
    path: str
    findings: List[Finding]
    error: Optional[str] = None
    cached: bool = False
    digest: Optional[str] = None
    deps: Optional[Tuple[str, ...]] = None  # the files the findings depend on; None: unknown


def _internal_error(shown: str, err: BaseException) -> str:
    """One line naming the file; with GRADLINT_DEBUG=1 the traceback follows."""
    import os

    line = str(err) if isinstance(err, InternalError) else str(InternalError(shown, err))
    if os.environ.get("GRADLINT_DEBUG") == "1":
        import traceback

        cause = err.cause if isinstance(err, InternalError) else err
        line += "\n" + "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip()
    return line


def _crashed(path: str) -> _Outcome:
    """The outcome of a file whose worker process died (a signal) while checking it alone."""
    return _Outcome(path, [], f"internal error while checking {display_path(path)}: the worker process died "
                              f"(killed by a signal: a crash in a native parser, or out of memory)")


class _Caches:
    """One result cache per settings in use (hierarchical configs each keep their own)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.by_settings: dict = {}

    def for_settings(self, settings: Any) -> Any:
        if not self.enabled:
            return None
        key = (settings.config_path, settings.root, settings.cache_path)
        if key not in self.by_settings:
            from gradlint.cache import Cache

            self.by_settings[key] = Cache(settings)
        return self.by_settings[key]


def _lint_path(path: str, settings: Any, caches: _Caches) -> _Outcome:
    from gradlint.config import ConfigError

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        return _Outcome(path, [], f"cannot read {display_path(path)}: {err.strerror or err}")
    try:
        settings = settings.for_path(path)
    except ConfigError as err:
        return _Outcome(path, [], str(err))
    enabled = settings.enabled_codes(path)
    cache = caches.for_settings(settings)
    key = None
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if cache is not None:
        key = cache.key(path, data, enabled)
        hit = cache.lookup(key, display_path(path), lambda: _program_text(data, path))
        if hit is not None:
            return _Outcome(path, hit[0], cached=True, digest=digest, deps=tuple(hit[1]))
    from gradlint.analysis import collecting_consulted_files

    try:
        with collecting_consulted_files() as consulted:
            findings = lint_bytes(data, path, settings, enabled)
    except Exception as err:  # never let one file take the run down
        return _Outcome(path, [], _internal_error(display_path(path), err))
    deps = None
    if cache is not None and key is not None:
        import os

        from gradlint.cache import dependencies, dependency_sha
        from gradlint.discovery import PROJECT_LISTING

        try:
            depends = dependencies(_program_bytes(data, path), path, settings)
            if depends and getattr(settings, "root", None):  # a new module may take an import's place
                consulted.add(PROJECT_LISTING + os.path.abspath(settings.root))
            for other in sorted(consulted):  # e.g. the callers GL002 read: the findings depend on them
                sha = dependency_sha(other)
                if sha is not None:
                    depends[other] = sha
            cache.put(key, findings, depends)
            deps = tuple(sorted(depends))
        except Exception:  # the cache is only an optimisation
            pass
    return _Outcome(path, findings, digest=digest, deps=deps)


_WORKER: dict = {}


def _init_worker(settings: Any, use_cache: bool, cwd: str) -> None:
    import os

    os.chdir(cwd)
    _WORKER["settings"] = settings
    _WORKER["caches"] = _Caches(use_cache)


def _lint_chunk(paths: Sequence[str]) -> List[_Outcome]:
    return pool.work_through(paths, lambda p: _lint_path(p, _WORKER["settings"], _WORKER["caches"]))


def cached(path: str, settings: Any) -> bool:
    """Does the result cache already hold `path`'s findings as it is now (a hit `lint_files`
    would take)? False when it cannot tell (unreadable file, configuration error)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        settings = settings.for_path(path)
        cache = _Caches(True).for_settings(settings)
        key = cache.key(path, data, settings.enabled_codes(path))
        return cache.get(key, display_path(path), lambda: _program_text(data, path)) is not None
    except Exception:
        return False


def lint_files(
    files: List[str],
    settings: Any,
    *,
    jobs: int = 1,
    use_cache: bool = False,
    progress: Optional[Any] = None,
) -> LintResult:
    """Lint `files` (paths as given); findings sorted, internal errors collected per file."""
    import os

    unique = sorted(dict.fromkeys(files))
    result = LintResult(files_checked=len(unique))
    forget_files()  # files may have come and gone since the last run in this process
    forget_answers()
    forget_listings()
    if not unique:
        return result
    jobs = pool.default_jobs() if not jobs or jobs < 1 else jobs
    caches = _Caches(use_cache)
    outcomes = pool.run(
        unique, jobs, _lint_chunk, lambda path: _lint_path(path, settings, caches), lambda o: o.path,
        initializer=_init_worker, initargs=(settings, use_cache, os.getcwd()), progress=progress,
        crashed=_crashed,
    )
    for outcome in sorted(outcomes, key=lambda o: o.path):
        result.findings.extend(outcome.findings)
        result.cache_hits += outcome.cached
        result.paths[display_path(outcome.path)] = outcome.path
        if outcome.digest is not None:
            result.digests[display_path(outcome.path)] = outcome.digest
        if outcome.cached:
            result.cached.add(display_path(outcome.path))
        if outcome.error:
            result.errors.append(outcome.error)
        if outcome.deps is None or result.dependencies is None:
            result.dependencies = None
        else:
            result.dependencies.update(outcome.deps)
    result.findings.sort(key=Finding.sort_key)
    return result
