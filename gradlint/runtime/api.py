"""The Python API: `with gradlint.runtime.trace() as t: train(); print(t.report())`.

`Trace` owns one Tracer, removes it however the block ends, and afterwards joins what it saw with
the static findings of the user files that ran (the files in the traced call stacks, plus any
given explicitly). Importing this module does not import torch; entering the block does.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Iterable, List, Optional, Sequence

from gradlint.findings import RULES, Finding
from gradlint.runtime.events import Observations
from gradlint.runtime.verdicts import failing, judge, loose_leaf_note


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


_PREFIXES: List[str] = []


def _is_library(path: str) -> bool:
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    if not _PREFIXES:
        found = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p}
        _PREFIXES.extend(sorted(p for p in found if p != os.sep) or [""])
    return any(_under(path, [p]) for p in _PREFIXES if p)


def files_that_ran(obs: Observations, *, roots: Sequence[str], extra: Iterable[str] = ()) -> List[str]:
    """User source files worth linting: those in traced stacks and `extra` (e.g. the script and
    project modules it imported) that lie under one of `roots` and outside installed packages."""
    roots = [os.path.realpath(r) for r in roots]
    found = dict.fromkeys(os.path.realpath(p) for p in extra)
    for site in obs.sites.values():
        for path, _ in site.stack:
            found.setdefault(os.path.realpath(path))
    return sorted(
        path for path in found
        if path.endswith((".py", ".pyw")) and os.path.isfile(path) and _under(path, roots)
        and not _is_library(path)
    )


def _resolved(folder: str, memo: Dict[str, str]) -> str:
    """`os.path.realpath(folder)` for an absolute folder, resolving each parent once through `memo`
    (one `lstat` per folder met instead of one per component of every path)."""
    real = memo.get(folder)
    if real is None:
        parent, name = os.path.split(folder)
        if not name or parent == folder or name in (os.curdir, os.pardir):
            real = os.path.realpath(folder)
        else:
            joined = os.path.join(_resolved(parent, memo), name)
            real = os.path.realpath(joined) if os.path.islink(joined) else joined
        memo[folder] = real
    return real


def imported_project_files(roots: Sequence[str]) -> List[str]:
    """Project modules imported so far: loaded from under `roots`, not from installed packages.

    A program that imported torch has about a thousand modules in a couple of hundred folders, so
    each folder is resolved and judged once; only files in project folders are checked for being
    links (`os.path.realpath` on each module costs a run some 20 ms). Modules whose `__file__` is
    not an absolute path (objects such as `torch.ops` that name a file they were not loaded from)
    are not files of the project."""
    roots = [os.path.realpath(r) for r in roots]
    out = []
    memo: Dict[str, str] = {}
    folders: Dict[str, Optional[str]] = {}  # folder as imported -> resolved, None: not the project's
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not isinstance(path, str) or not os.path.isabs(path):
            continue
        head, tail = os.path.split(path)
        if head not in folders:
            resolved = _resolved(head, memo)
            project = _under(resolved, roots) and not _is_library(resolved + os.sep)
            folders[head] = resolved if project and not _under(resolved, [_GRADLINT_PACKAGE]) else None
        real_head = folders[head]
        if real_head is None or not tail:
            continue
        real = os.path.join(real_head, tail)
        if os.path.islink(real):
            real = os.path.realpath(real)
            if not _under(real, roots) or _is_library(real) or _under(real, [_GRADLINT_PACKAGE]):
                continue
        out.append(real)
    return out


_GRADLINT_PACKAGE = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lint(files: Sequence[str], settings, use_cache: bool = False) -> List[Finding]:
    """Static findings for `files` through the engine (select/ignore/noqa applied); with `use_cache`
    through the same result cache as `gradlint check`, so a rerun of an unchanged script skips the
    static pass."""
    from gradlint.engine import lint_files

    return list(lint_files(list(files), settings, use_cache=use_cache).findings)


def load_default_settings(cwd: Optional[str] = None):
    from gradlint.config import load_settings

    return load_settings(cwd or os.getcwd())


class Trace:
    """A traced region of a program. Use as a context manager; read results after it ends."""

    def __init__(self, *, settings=None, files: Iterable[str] = (), roots: Optional[Sequence[str]] = None,
                 cwd: Optional[str] = None, use_cache: bool = False) -> None:
        from gradlint.runtime.tracer import Tracer

        self.cwd = os.path.abspath(cwd or os.getcwd())
        self.roots = list(roots) if roots is not None else [self.cwd]
        self.settings = settings
        self.extra_files = list(files)
        self.use_cache = use_cache  # read and write gradlint check's result cache for the static pass
        self.tracer = Tracer()
        self._findings: Optional[List[Finding]] = None
        self._observations: Optional[Observations] = None

    # -- context manager -----------------------------------------------------------------
    def start(self) -> "Trace":
        self.tracer.start()
        return self

    def stop(self) -> Observations:
        if self._observations is None:
            self._observations = self.tracer.stop()
        return self._observations

    def __enter__(self) -> "Trace":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()  # returns None: never swallows the block's exception

    # -- results ---------------------------------------------------------------------------
    @property
    def observations(self) -> Observations:
        return self._observations if self._observations is not None else self.tracer.observations

    def use_observations(self, obs: Observations) -> None:
        """Judge merged observations (distributed runs) instead of this process's own."""
        self._observations = obs
        self._findings = None

    def files(self) -> List[str]:
        return files_that_ran(self.observations, roots=self.roots, extra=self.extra_files)

    def _settings(self):
        if self.settings is None:
            self.settings = load_default_settings(self.cwd)
        return self.settings

    def findings(self) -> List[Finding]:
        """Static findings of the files that ran, with runtime verdicts, plus runtime-only ones."""
        if self._findings is None:
            settings = self._settings()
            files = self.files()
            static = lint(files, settings, self.use_cache) if files else []

            def enabled(code: str, path: str) -> bool:
                return code in settings.enabled_codes(os.path.join(self.cwd, path))

            self._findings = judge(static, self.observations, cwd=self.cwd, enabled=enabled)
        return self._findings

    def confirmed(self) -> List[Finding]:
        """The findings that fail a run: confirmed, or seen at runtime (notes excepted)."""
        return failing(self.findings())

    def report(self, output_format: str = "full") -> str:
        """The findings rendered like `gradlint run` prints them, plus the tracer's health line."""
        from gradlint.reporters import ReportContext, renderer

        findings = self.findings()
        settings = self._settings()
        codes = getattr(settings, "base_codes", None) or {f.code for f in findings}
        ctx = ReportContext(
            cwd=self.cwd,
            rules=[RULES[c] for c in sorted(set(codes) | {f.code for f in findings}) if c in RULES],
            files_checked=len(self.files()),
            source_of=_read_source(self.cwd),
        )
        text = renderer(output_format)(list(findings), ctx)
        if output_format in ("full", "concise"):
            text += summary(self.observations) + "\n"
        return text


def summary(obs: Observations, outcome: Optional[str] = None) -> str:
    """What was traced and the tracer's own errors; `outcome` (e.g. "the script exited with status 3")
    leads when the traced program failed. Informational notes follow on their own lines."""
    line = "gradlint run: "
    if outcome:
        line += f"{outcome}; "
    line += (f"traced {obs.backward_calls} backward call{'s' if obs.backward_calls != 1 else ''}"
             f" and {obs.steps} optimizer step{'s' if obs.steps != 1 else ''}")
    if obs.ranks > 1:
        line += f" over {obs.ranks} ranks"
    if obs.threads > 1:
        line += f" in {obs.threads} threads (each thread's gradients followed separately)"
    if obs.internal_errors:
        line += (f"; {obs.internal_errors} internal tracer error{'s' if obs.internal_errors != 1 else ''} "
                 f"(ignored, training unaffected): {obs.first_error}")
    line += "."
    note = loose_leaf_note(obs)
    if note:
        line += f"\ngradlint run: {note}."
    return line


def _read_source(cwd: str):
    cache: dict = {}

    def source_of(path: str) -> Optional[str]:
        if path not in cache:
            try:
                with open(os.path.join(cwd, path), encoding="utf-8") as handle:
                    cache[path] = handle.read()
            except (OSError, UnicodeDecodeError):
                cache[path] = None
        return cache[path]

    return source_of


def trace(**options) -> Trace:
    """Trace the block: `with gradlint.runtime.trace() as t: ...`, then `t.findings()` / `t.report()`."""
    return Trace(**options)
