"""A per-file result cache keyed on content, not modification times (which lie in CI).

Layout: `<cache-dir>/<gradlint version>/<settings hash>/<k[:2]>/<k>.json`, where the settings hash
covers gradlint's version, the Python version, the resolved rule selection, per-file-ignores and
the analysis options, and each entry key `k` covers the file's path relative to the settings root,
the sha256 of its bytes, the codes enabled for it, and the content hashes of the project modules it
imports (a helper edited in another module can change its findings). The cache dir holds a
`.gitignore` containing `*`. Writes go to a temporary file in the same folder and are renamed into
place with os.replace, so concurrent runs (parallel pre-commit batches) never see half an entry.
Every cache failure (read-only disk, corrupt entry) degrades to a miss, never to an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from gradlint import __version__
from gradlint.atomic import write_atomic
from gradlint.findings import Edit, Finding, Fix

FORMAT = 4  # bump when the entry layout changes


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


_CODE_HASH: List[str] = []


def code_hash() -> str:
    """Hash of gradlint's own sources, so an edited rule (editable installs, development) never
    serves stale results under an unchanged version number. Read once per process (~200 kB)."""
    if not _CODE_HASH:
        import gradlint

        package = os.path.dirname(os.path.abspath(gradlint.__file__))
        digest = hashlib.sha256()
        for folder, subfolders, files in os.walk(package):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, package).encode() + b"\0")
                    try:
                        with open(path, "rb") as handle:
                            digest.update(handle.read())
                    except OSError:
                        pass
        _CODE_HASH.append(digest.hexdigest())
    return _CODE_HASH[0]


def settings_hash(settings) -> str:
    """What every file's findings depend on besides the file itself."""
    described = {
        "format": FORMAT,
        "version": __version__,
        "code": code_hash(),
        "python": list(sys.version_info[:2]),
        "implementation": sys.implementation.name,
        "codes": sorted(settings.base_codes),
        "per_file_ignores": [[p, list(c)] for p, c in settings.per_file_ignores],
        # the helper settings as AnalysisOptions gets them (not imported: that would load LibCST)
        "backward": list(settings.backward_functions),
        "step": list(settings.step_functions),
        "clear": list(settings.clear_functions),
        "root": os.path.abspath(settings.root),
    }
    return _digest(json.dumps(described, sort_keys=True))[:16]


def _dump(finding: Finding) -> dict:
    out = {
        "code": finding.code,
        "message": finding.message,
        "line": finding.line,
        "column": finding.column,
        "end_line": finding.end_line,
        "end_column": finding.end_column,
        "severity": finding.severity,
    }
    if finding.help is not None:
        out["help"] = finding.help
    if finding.cell is not None:
        out["cell"] = finding.cell
    if finding.related:
        out["related"] = list(finding.related)
    if finding.fix is not None:
        out["fix"] = {"description": finding.fix.description,
                      "applicability": finding.fix.applicability,
                      "edits": [[e.start, e.end, e.text] for e in finding.fix.edits]}
    return out


def _load(entry: dict, path: str) -> Finding:
    fix = None
    if entry.get("fix"):
        fix = Fix(entry["fix"]["description"], tuple(Edit(s, e, t) for s, e, t in entry["fix"]["edits"]),
                  entry["fix"].get("applicability", "safe"))
    return Finding(
        code=entry["code"],
        message=entry["message"],
        path=path,
        line=entry["line"],
        column=entry["column"],
        end_line=entry["end_line"],
        end_column=entry["end_column"],
        severity=entry["severity"],
        fix=fix,
        help=entry.get("help"),
        cell=entry.get("cell"),
        related=tuple(entry.get("related", ())),
    )


def _is_int(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def valid_finding(entry, source: Optional[str] = None) -> bool:
    """Is `entry` a stored finding gradlint could have written? Types, known rule code, ranges
    (1-based lines, end not before start), and a fix's edits: [start, end, text] with
    0 <= start <= end, not overlapping, and (when the file's decoded `source` is given) inside it."""
    from gradlint.findings import RULES  # lazily: this module's imports stay as they are

    if not isinstance(entry, dict):
        return False
    if not isinstance(entry.get("code"), str) or entry["code"] not in RULES:
        return False
    if not isinstance(entry.get("message"), str) or not isinstance(entry.get("severity"), str):
        return False
    if not all(_is_int(entry.get(k), 1) for k in ("line", "end_line")):
        return False
    if not all(_is_int(entry.get(k), 0) for k in ("column", "end_column")):
        return False
    if (entry["end_line"], entry["end_column"]) < (entry["line"], entry["column"]):
        return False
    if "cell" in entry and entry["cell"] is not None and not _is_int(entry["cell"], 1):
        return False
    if "help" in entry and not isinstance(entry["help"], str):
        return False
    related = entry.get("related", [])
    if not isinstance(related, list) or not all(_is_int(line, 1) for line in related):
        return False
    fix = entry.get("fix")
    if fix is None:
        return True
    if not isinstance(fix, dict) or not isinstance(fix.get("description"), str):
        return False
    edits = fix.get("edits")
    if not isinstance(edits, list) or not edits:
        return False
    spans = []
    for edit in edits:
        if not isinstance(edit, list) or len(edit) != 3:
            return False
        start, end, text = edit
        if not (_is_int(start) and _is_int(end) and isinstance(text, str) and start <= end):
            return False
        if source is not None and end > len(source):
            return False
        spans.append((start, end))
    spans.sort()
    if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
        return False
    return True


def valid_entry(stored, source: Optional[str] = None) -> bool:
    """Is `stored` (a parsed cache entry) well formed: {"deps": {path: sha256 hex},
    "findings": [finding...]} with every finding passing `valid_finding(.., source)`?
    A cache entry that fails is treated as a miss (never trusted, never an error)."""
    if not isinstance(stored, dict) or set(stored) != {"deps", "findings"}:
        return False
    deps, findings = stored["deps"], stored["findings"]
    if not isinstance(deps, dict) or not isinstance(findings, list):
        return False
    for sha in deps.values():
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            return False
    return all(valid_finding(entry, source) for entry in findings)


def _fits(findings: list, source: Optional[str]) -> bool:
    """Do stored findings (already `valid_finding`) describe `source`: edits inside it and
    line numbers within its lines (cells are checked by their own coordinates elsewhere)?"""
    if source is None:
        return False
    from gradlint.lines import split_lines

    last = max(len(split_lines(source)), 1)
    for entry in findings:
        if not valid_finding(entry, source):
            return False
        if entry.get("cell") is None and entry["end_line"] > last:
            return False
    return True


class Cache:
    """Look up and store one file's findings (without its display path, which is re-attached).

    An entry also records the sha256 of every project module whose helpers the file calls (see
    `dependencies`); a lookup is a hit only while those still hash the same. Checking
    the recorded modules is cheap (their hashes are memoised by stat), so a warm run never
    repeats the helper search."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.top = settings.cache_path
        self.folder = os.path.join(self.top, __version__, settings_hash(settings))
        self._ready = False

    def key(self, path: str, data: bytes, enabled: Iterable[str]) -> str:
        return _digest(
            self.settings.relative(path),
            hashlib.sha256(data).hexdigest(),
            ",".join(sorted(enabled)),
        )

    def _entry(self, key: str) -> str:
        return os.path.join(self.folder, key[:2], key + ".json")

    def get(self, key: str, display: str, source: Optional[Callable[[], Optional[str]]] = None
            ) -> Optional[List[Finding]]:
        """The stored findings for `key`, re-attached to `display`, or None (a miss). `source()`
        gives the file's decoded program: every finding must lie inside it and every fix edit
        apply to it (an entry is not trusted because it sits in the cache folder)."""
        hit = self.lookup(key, display, source)
        return None if hit is None else hit[0]

    def lookup(self, key: str, display: str, source: Optional[Callable[[], Optional[str]]] = None
               ) -> Optional[Tuple[List[Finding], List[str]]]:
        """Like `get`, with the paths of the helper modules the hit was checked against (the
        files its findings depend on besides the file itself)."""
        try:
            with open(self._entry(key), "r", encoding="utf-8") as handle:
                stored = json.load(handle)
            if not valid_entry(stored):
                return None  # hand-edited, truncated or crafted (a shared CI cache): a miss
            if source is not None and stored["findings"] and not _fits(stored["findings"], source()):
                return None
            for dep, sha in stored["deps"].items():
                if dependency_sha(dep) != sha:
                    return None  # a helper module changed: its callers must be re-checked
            return [_load(entry, display) for entry in stored["findings"]], sorted(stored["deps"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None

    def _prepare(self) -> None:
        if self._ready:
            return
        os.makedirs(self.folder, exist_ok=True)
        ignore = os.path.join(self.top, ".gitignore")
        if not os.path.exists(ignore):
            _atomic_write(ignore, "# Automatically created by gradlint.\n*\n")
        self._ready = True

    def put(self, key: str, findings: List[Finding], deps: Optional[Dict[str, str]] = None) -> None:
        """Store `findings` under `key`; `deps` maps helper module paths to their sha256."""
        try:
            self._prepare()
            target = self._entry(key)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            payload = {"deps": dict(sorted((deps or {}).items())), "findings": [_dump(f) for f in findings]}
            _atomic_write(target, json.dumps(payload, separators=(",", ":")))
        except OSError:
            pass  # a cache that cannot be written is only slower


def _atomic_write(path: str, text: str) -> None:
    # 0644: the cache may be shared (CI caches, containers)
    write_atomic(path, text.encode("utf-8"), mode=0o644)


# ---------------------------------------------------------------------------------------------
# Dependencies: the project modules whose helpers a file calls


def dependencies(program: bytes, path: str, settings) -> Dict[str, str]:
    """path -> sha256 of the project modules holding the helpers the program of `path` calls
    (as the prefilter follows them); stored with the entry and checked on every lookup."""
    from gradlint.prefilter import helper_modules

    return helper_modules(program, path, settings)


def dependency_digest(program: bytes, path: str, settings) -> str:
    """One hash over `dependencies` (paths and contents)."""
    parts = [f"{m}\0{sha}" for m, sha in sorted(dependencies(program, path, settings).items())]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


_SHAS: Dict[tuple, str] = {}


def dependency_sha(dep: str) -> Optional[str]:
    """What a dependency of an entry is checked by: a file's sha256, or for the project's file
    listing (`discovery.PROJECT_LISTING` + root) the hash of which `.py` files it holds."""
    from gradlint.discovery import PROJECT_LISTING, listing_digest

    if dep.startswith(PROJECT_LISTING):
        return listing_digest(dep[len(PROJECT_LISTING):])
    return file_sha(dep)


def file_sha(path: str) -> Optional[str]:
    """sha256 of a file's bytes, memoised by (path, mtime, size); None when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _SHAS:
        try:
            with open(path, "rb") as handle:
                _SHAS[key] = hashlib.sha256(handle.read()).hexdigest()
        except OSError:
            return None
    return _SHAS[key]
