"""Prefilter stage of the pipeline: which files cannot hold a finding of the selected rules, so
that they are never parsed by LibCST (most files of a repository have no training loop).

What a file must contain comes from the rules' declarations (`Rule.needs`, gradlint/rules/):
1. Stage one, text: some selected rule's words (or a configured helper name) occur in it, and so
   does one of the names stage two looks for (a name the code reads is spelled in its text).
2. Stage two, compiled names: CPython compiles the file (fast, in C) and the names its code really
   reads must include one of those rules' `names` (`autograd_names` count only when the module
   names torch.autograd), or a configured helper. Words only in docstrings, comments or
   `def backward` of autograd Functions do not count; a file CPython cannot compile is analysed
   (so it gets its GL000). A compiled file must also spell one of the names as a call (or an
   import under another name): every rule reports at a call, and code that only reads a name
   (`torch.Tensor.backward` in a table) runs no backward of its own (`_may_name` with `called`).
3. Imported helpers: a file with none of that can still hold a finding when it calls a project
   function, imported from another module, whose body meets the needs (followed through the
   modules it imports, bounded). Found with regexes over the text, resolved by the one import
   resolver (gradlint.analysis.imports); the modules visited go into the cache's dependencies.
4. Rules whose needs have no names (unused-noqa's `noqa`, case-folded) admit on the words alone.
Imports no LibCST.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from gradlint.analysis.imports import REEXPORT_HOPS, import_bindings
from gradlint.compiled import (compile_codes, compiler_keeps_dead_names, forget_summaries, functions_running_backward,
                               may_run_backward, names_autograd, summarised)
from gradlint.rules import RULES, Rule

_DEF = re.compile(rb"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)", re.MULTILINE)
# (`\b(?<!\.)` is `(?<![\w.])` before a word character, and lets the scan skip ahead: 40% faster)
_CALL = re.compile(rb"\b(?<!\.)([A-Za-z_][\w.]*)[ \t]*\(")
_CLASS = re.compile(rb"^[ \t]*class[ \t]+(\w+)", re.MULTILINE)
# The base classes of a class statement: `class Recipe(Trainer, Mixin):` -> b"Trainer, Mixin"
_BASES = re.compile(rb"^[ \t]*class[ \t]+\w+[ \t]*\(([^)]*)\)", re.MULTILINE)
# What each of those line patterns holds on its first line: searched for instead (a literal
# first, so the regex engine skips ahead), then the pattern is tried at that line's start.
_DEF_HINT = re.compile(rb"def[ \t]+\w")
_CLASS_HINT = re.compile(rb"class[ \t]+\w")


def _line_matches(pattern: "re.Pattern[bytes]", hint: "re.Pattern[bytes]", data: bytes) -> Iterator["re.Match[bytes]"]:
    """`pattern.finditer(data)` for a pattern anchored at line starts (`^`, MULTILINE) whose
    first line always holds a match of `hint` (which spans no line break): the same matches,
    found about ten times faster, since only the lines holding `hint` are tried."""
    resume = 0  # like finditer: no match starts inside the previous one
    tried = -1
    for found in hint.finditer(data):
        line_start = data.rfind(b"\n", 0, found.start()) + 1
        if line_start == tried or line_start < resume:
            continue
        tried = line_start
        match = pattern.match(data, line_start)
        if match is not None:
            resume = max(match.end(), line_start + 1)
            yield match


@dataclass(frozen=True)
class Wanted:
    """What makes code able to hold a finding: text `words` (stage one), compiled `names` and
    `autograd_names` (stage two), and configured `helpers` (either stage)."""

    words: Tuple[str, ...]
    names: frozenset
    autograd_names: frozenset
    helpers: frozenset
    defines: frozenset = frozenset()

    @functools.cached_property
    def bwords(self) -> Tuple[bytes, ...]:
        return tuple(w.encode("utf-8", "surrogatepass") for w in self.words + tuple(sorted(self.helpers)))

    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.words, self.names, self.autograd_names, self.helpers, self.defines))

    def __hash__(self) -> int:  # part of memo keys looked up 400,000 times a run: hashed once
        return self._hash


def _helper_names(settings) -> frozenset:
    return frozenset(getattr(settings, "helper_names", ()) or ())


def wanted_by(rules: Sequence[Rule], settings) -> Wanted:
    """The union of the staged needs (those with compiled names) of `rules`. One instance per
    selection and configured helpers: equal memo keys are then the same object (no field-by-field
    comparison on each lookup)."""
    return _wanted(tuple(rules), _helper_names(settings))


@functools.lru_cache(maxsize=64)
def _wanted(rules: Tuple[Rule, ...], configured: frozenset) -> Wanted:
    staged = [r.needs for r in rules if r.needs.names or r.needs.autograd_names]
    words = tuple(dict.fromkeys(w for n in staged for w in n.words))
    helpers = configured if any(n.helpers for n in staged) else frozenset()
    return Wanted(words, frozenset(x for n in staged for x in n.names),
                  frozenset(x for n in staged for x in n.autograd_names), helpers,
                  frozenset(x for n in staged for x in n.defines))


def search_wanted(settings) -> Wanted:
    """What the imported-helper search looks for: every rule that may fire through a helper
    (independent of the selection, so cache dependencies do not depend on it)."""
    return wanted_by([r for r in RULES.values() if r.needs.helpers], settings)


@functools.lru_cache(maxsize=64)
def _DEDENT(indent: int) -> "re.Pattern[bytes]":
    """A line that ends a body indented by more than `indent`: not blank, not a comment, and
    indented `indent` or less."""
    return re.compile(rb"\n(?![ \t]{%d})[ \t]*[^ \t\r\n#]" % (indent + 1))


@dataclass(frozen=True)
class _ModuleText:
    """What the helper search needs of one module: its functions' spans (by indentation: a body
    ends at the next non-blank line indented no deeper than its `def`; methods count under their
    own names, nested functions also in their outer body), whether each body names a prefilter
    word, and every call in the module by position."""

    sha: str
    functions: Dict[str, Tuple[int, int, bool]]  # name -> (start offset, end offset, names a word?)
    bindings: Tuple[Tuple[str, str, str], ...]
    data: bytes  # kept only for modules the helper search reached
    path: str = ""
    classes: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # name -> (start, end offset)
    wanted: Optional["Wanted"] = None  # what counts as running a backward
    # names of the functions whose compiled code may run a backward, once asked (None: the
    # module does not compile, so the word in the text decides)
    _running: list = field(default_factory=list, compare=False, repr=False)
    # name -> (the same-module helpers and imported targets its calls reach); a pure function of
    # this module's bytes, so kept with it (many files reach one helper). The calls themselves
    # are not kept: 8 MB of strings per pool worker on torch's sources, read once each.
    _edges: Dict[str, Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]] = field(
        default_factory=dict, compare=False, repr=False)

    def calls_in(self, name: str) -> set:
        """The calls in function `name`'s body, as written (`f`, `self.f`, `mod.f`)."""
        start, end, _ = self.functions[name]
        return {c.decode("ascii", "replace") for c in _CALL.findall(self.data, start, end)}

    def edges(self, name: str) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
        """What a call of `name` may run next: (helpers of this module its body calls, directly or
        as `self.x`, as (this path, name)), (imported (module file, name) its calls reach)."""
        known = self._edges.get(name)
        if known is None:
            inner = self.calls_in(name)
            local = []
            for call in inner:
                short = call.rsplit(".", 1)[-1]
                if ("." not in call or call.startswith("self.")) and short in self.functions:
                    local.append((self.path, short))
            known = self._edges[name] = (local, _targets(inner, self.bindings))
        return known

    def methods_of(self, cls: str) -> List[str]:
        """The functions defined inside class `cls` (by offset), sorted."""
        start, end = self.classes[cls]
        return sorted(n for n, (s, _e, _m) in self.functions.items() if start < s < end)

    def runs_backward(self, name: str) -> bool:
        """May function `name` run a backward? Its text must name a prefilter word and, where
        the module compiles, its code must use one (stage two, as for files: a word in a
        docstring or comment, or `def backward` itself, runs nothing). Compiled on first ask."""
        start, end, mentions = self.functions[name]
        if not mentions or (self.wanted is not None and not _may_name_bytes(self.data, start, end, self.wanted)):
            return False  # no wanted name spelled in its body: its code cannot read one (no compile)
        if not self._running:
            mentioning = {n for n, (_, _, mentions) in self.functions.items() if mentions}
            universe = _universe(self.wanted.helpers) if self.wanted is not None else None
            self._running.append(functions_running_backward(self.data, self.path, mentioning, self.wanted, universe))
        running = self._running[0]
        return running is None or name in running


def _module_text(data: bytes, path: str, root: str, wanted: Wanted) -> _ModuleText:
    words = wanted.bwords
    classes: Dict[str, Tuple[int, int]] = {}
    for match in _line_matches(_CLASS, _CLASS_HINT, data):
        line_start = data.rfind(b"\n", 0, match.start()) + 1
        indent = match.start(1) - line_start - len(data[line_start:match.start(1)].lstrip())
        after = _DEDENT(indent).search(data, match.end())
        classes.setdefault(match.group(1).decode("ascii", "replace"),
                           (match.start(), after.start() + 1 if after else len(data)))
    functions: Dict[str, Tuple[int, int, bool]] = {}
    for match in _line_matches(_DEF, _DEF_HINT, data):
        line_start = data.rfind(b"\n", 0, match.start()) + 1
        indent = match.start(1) - line_start - len(data[line_start:match.start(1)].lstrip())
        after = _DEDENT(indent).search(data, match.end())
        end = after.start() + 1 if after else len(data)
        name = match.group(1).decode("ascii", "replace")
        mentions = any(data.find(w, match.start(), end) >= 0 for w in words)
        old = functions.get(name)
        if old is not None:  # same name twice (overloads, methods of two classes): union
            functions[name] = (min(old[0], match.start()), max(old[1], end), old[2] or mentions)
        else:
            functions[name] = (match.start(), end, mentions)
    return _ModuleText(
        sha=hashlib.sha256(data).hexdigest(),
        functions=functions,
        bindings=tuple(import_bindings(data, path, root)),
        data=data if functions else b"",
        path=path,
        wanted=wanted,
        classes=classes,
    )


def _targets(calls: Iterable[str], bindings) -> List[Tuple[str, str]]:
    """(module file, function name) for calls that go through import bindings: `f(` for
    `from m import f` (or `*`), `local.f(` for a module bound as `local`."""
    wanted: List[Tuple[str, str]] = []
    calls = sorted(set(calls))
    callset = set(calls)
    by_prefix: Dict[str, List[str]] = {}  # "a.b" -> ["f", ...] for every call a.b.f(
    for call in calls:
        head, dot, tail = call.rpartition(".")
        if dot:
            by_prefix.setdefault(head, []).append(tail)
    for target, local, remote in bindings:
        if remote == "*":
            wanted += [(target, c) for c in calls if "." not in c]
        elif remote:
            if local in callset:
                wanted.append((target, remote))
        else:  # a module: local.f(...)
            wanted += [(target, tail) for tail in by_prefix.get(local, ())]
    return wanted


_CHAIN = re.compile(rb"([A-Za-z_][\w.]*)[ \t]*\(")
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def _calls_through(data: bytes, bindings) -> set:
    """The calls of `data` (as `_CALL` reads them) that `_targets` can resolve through
    `bindings`: only those starting with a bound local name, found with `bytes.find` instead of
    a scan of every call in the file, unless a `*` import makes every plain call a candidate."""
    if not bindings:
        return set()
    if any(remote == "*" for _, _, remote in bindings):
        return {m.group(1).decode("ascii", "replace") for m in _CALL.finditer(data)}
    found = set()
    for name in sorted({local for _, local, _ in bindings}):
        word = name.encode("utf-8", "surrogatepass")
        at = data.find(word)
        while at >= 0:
            if at == 0 or data[at - 1] not in _WORD_BYTES:
                match = _CHAIN.match(data, at)
                if match is not None:
                    found.add(match.group(1).decode("ascii", "replace"))
            at = data.find(word, at + 1)
    return found


# Bounds on what one process keeps (the editor server runs for days): modules read by the helper
# search (each keeps its bytes while it has functions) and answers per linted file.
MAX_MODULES = 2048
MAX_ANSWERS = 4096
MAX_DEFINITIONS = 65536


class _ProjectFiles:
    """Per process: the `_ModuleText` of each project file reached, by path, checked against the
    file's stat on every use (so edits are seen; an edited file replaces its entry). Bounded:
    past MAX_MODULES the oldest entries go. Also the last answers per linted file."""

    def __init__(self) -> None:
        self.memo: Dict[tuple, Tuple[tuple, _ModuleText]] = {}
        self.answers: Dict[tuple, Tuple[bool, List[str]]] = {}
        # keys of `memo` whose file was stat-checked since the last `forget_answers` (one run):
        # a search reaches the same few modules hundreds of thousands of times on a large tree
        self.checked: set = set()
        # (module, name, wanted, root) -> (where `_definition` found it, the modules it read):
        # answered from modules checked in this run, so forgotten with `checked`
        self.definitions: Dict[tuple, Tuple[Optional[Tuple[str, str]], Tuple[str, ...]]] = {}

    def facts(self, path: str, wanted: Wanted, root: str) -> _ModuleText:
        key = (path, wanted, root)
        if key in self.checked:
            return self.memo[key][1]
        try:
            st = os.stat(path)
            stamp: tuple = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (None, None)
        known = self.memo.get(key)
        if known is not None and known[0] == stamp:
            self.checked.add(key)
            return known[1]
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            data = b""
        module = _module_text(data, path, root, wanted)
        if self.memo.pop(key, None) is not None or len(self.memo) >= MAX_MODULES:
            self.definitions.clear()  # some were answered from a module that changed or goes now
        while len(self.memo) >= MAX_MODULES:
            self.checked.discard(next(iter(self.memo)))
            del self.memo[next(iter(self.memo))]
        self.memo[key] = (stamp, module)
        self.checked.add(key)
        return module

    def _definition(self, target: str, name: str, wanted: Wanted, root: str,
                    read: Optional[set] = None) -> Optional[Tuple[str, str]]:
        """Where `name` seen in module `target` is defined, following re-exports; the modules
        looked at on the way go into `read` (a re-exporting `__init__` edited to define the name
        itself changes the answer)."""
        key = (target, name, wanted, root)
        known = self.definitions.get(key)
        if known is None:  # the same few names are looked up from most files of a tree
            looked: List[str] = []
            known = (self._follow(target, name, wanted, root, looked), tuple(looked))
            if len(self.definitions) >= MAX_DEFINITIONS:
                self.definitions.clear()
            self.definitions[key] = known
        if read is not None:
            read.update(known[1])
        return known[0]

    def _follow(self, target: str, name: str, wanted: Wanted, root: str, read: List[str]) -> Optional[Tuple[str, str]]:
        for _ in range(REEXPORT_HOPS + 1):
            read.append(target)
            module = self.facts(target, wanted, root)
            if name in module.functions or name in module.classes:
                return target, name
            hop = next(((t, r) for t, local, r in module.bindings if local == name and r and r != "*"), None)
            if hop is None:
                return None
            target, name = hop
        return None

    def helpers(self, data: bytes, path: str, root: str, wanted: Wanted) -> Tuple[bool, List[str]]:
        """(does a project helper this file calls name a prefilter word, directly or through the
        helpers it calls in turn?, the modules visited on the way). Bounded: 64 functions."""
        key = (path, hash(data), len(data), wanted, root)
        if key in self.answers:
            return self.answers[key]
        bindings = import_bindings(data, path, root)
        calls = _calls_through(data, bindings)
        if bindings:  # an imported project class used as a base: its methods run as `self.m()`
            calls |= {b.strip().decode("ascii", "replace") for m in _line_matches(_BASES, _CLASS_HINT, data)
                      for b in m.group(1).split(b",") if b.strip()}
        # Sorted throughout: the walk is bounded, so its order must not depend on hash seeds
        # (the visited modules go into cache keys, which must be the same in every run).
        hops: set = set()  # modules read while following re-exports
        todo = [d for d in (self._definition(t, n, wanted, root, hops) for t, n in _targets(calls, bindings)) if d]
        todo = sorted(set(todo), reverse=True)
        seen: set = set()
        found = False
        while todo and len(seen) < 64:
            where, name = todo.pop()
            if (where, name) in seen:
                continue
            seen.add((where, name))
            module = self.facts(where, wanted, root)
            if name not in module.functions:  # a class: constructed or subclassed here
                if name in module.classes:
                    todo += sorted({(where, m) for m in module.methods_of(name)}, reverse=True)
                continue
            if module.runs_backward(name):
                found = True
                continue
            local, targets = module.edges(name)  # helpers of the helper: same module, or imported there
            more = [(where, short) for _, short in local]
            imported = (self._definition(t, n, wanted, root, hops) for t, n in targets)
            more += [d for d in imported if d]
            todo += sorted(set(more), reverse=True)
        me = os.path.abspath(path)
        answer = (found, sorted(({m for m, _ in seen} | hops) - {me}))
        if len(self.answers) >= MAX_ANSWERS:
            self.answers.clear()
        self.answers[key] = answer
        return answer


_PROJECT = _ProjectFiles()


def forget_answers() -> None:
    """Forget the helper-search answers of earlier runs (their files may have changed): call it
    before each run (a run trusts, for its duration, the files it has already looked at)."""
    _PROJECT.answers.clear()
    _PROJECT.checked.clear()
    _PROJECT.definitions.clear()


def forget_all() -> None:
    """Forget everything the helper search memoised (tests that rewrite files in place)."""
    _PROJECT.memo.clear()
    forget_summaries()
    _PROJECT.answers.clear()
    _PROJECT.checked.clear()
    _PROJECT.definitions.clear()


# (the name the tests read)
_compiler_keeps_dead_names = compiler_keeps_dead_names


def _universe(configured: frozenset) -> Wanted:
    """Every staged rule's needs: stage two's `wanted` for any selection is within it."""
    return _wanted(tuple(r for r in RULES.values() if r.needs.names or r.needs.autograd_names), configured)


def compiled_prefilter(text: str, path: str, wanted: Wanted, data: Optional[bytes] = None,
                       configured: frozenset = frozenset()) -> Tuple[bool, bool]:
    """Stage two, for text that names a wanted word: (may a finding be here?, did CPython
    compile it?). A finding needs a wanted name or a configured helper among the names the
    code really uses. A file CPython cannot compile (or a CPython that drops dead code's names)
    is analysed, so LibCST decides. `data`: the bytes the text was decoded from, and
    `configured`: the configured helper names, to take the answer from the helper search's
    compile of the same bytes when there was one."""
    known = summarised(text, data, path, wanted, configured)
    if known is not None:
        return known, True
    codes = compile_codes(text, path)
    if codes is None:
        return True, False
    if not compiler_keeps_dead_names():
        return True, True
    return may_run_backward(codes, wanted, names_autograd(codes)), True


def _selected(enabled: Iterable[str]) -> List[Rule]:
    return [RULES[code] for code in sorted(set(enabled)) if code in RULES]


def needs_analysis(text: str, data: Optional[bytes], path: str, settings, enabled: Iterable[str]) -> bool:
    """False when no finding of the rules in `enabled` is possible (see `prefilter`)."""
    return prefilter(text, data, path, settings, enabled)[0]


def prefilter(text: str, data: Optional[bytes], path: str, settings, enabled: Iterable[str]) -> Tuple[bool, bool]:
    """(may a finding of a rule in `enabled` be here?, did CPython compile the text?), from the
    rules' declared needs (see the module docstring)."""
    possible, compiled, _ = _decide(text, data, path, settings, enabled)
    return possible, compiled


# What decided a file's fate in `prefilter_stage` (the benchmark counts files per stage).
STAGE_NO_WORDS = "no-words"  # stage one: no selected rule's word; not parsed at all
STAGE_NO_NAMES = "no-names"  # stage two: compiled, the code reads none of the names
STAGE_NAMES = "names"  # stage two admitted it (or CPython could not compile it): parsed
STAGE_BEYOND = "helpers-or-words-only"  # admitted by an imported helper or a words-only rule


def prefilter_stage(text: str, data: Optional[bytes], path: str, settings, enabled: Iterable[str]) -> str:
    """Which stage decided `prefilter`'s answer for this file (one of the STAGE_* values)."""
    return _decide(text, data, path, settings, enabled)[2]


def names_a_word(text: str, settings, enabled: Iterable[str]) -> bool:
    """Stage one alone: does the text name a word of a selected rule (or a configured helper)?"""
    lowered = None
    for rule in _selected(enabled):
        words = rule.needs.words
        if rule.needs.fold_case:
            lowered = text.lower() if lowered is None else lowered
            if any(word.lower() in lowered for word in words):
                return True
        elif any(word in text for word in words):
            return True
    return any(helper in text for helper in _helper_names(settings))


def _decide(text: str, data: Optional[bytes], path: str, settings,
            enabled: Iterable[str]) -> Tuple[bool, bool, str]:
    rules = _selected(enabled)
    wanted = wanted_by(rules, settings)
    compiled = False
    stage = STAGE_NO_WORDS
    if any(word in text for word in wanted.words + tuple(sorted(wanted.helpers))):
        autograd_named = "autograd" in text
        if _may_name(text.__contains__, autograd_named, wanted):
            # Compiled even when it names no call: a file the words admit that does not compile
            # gets its GL000 (LibCST reports it).
            possible, compiled = compiled_prefilter(text, path, wanted, data, _helper_names(settings))
            if possible and (not compiled or _may_name(text.__contains__, autograd_named, wanted,
                                                       _text_calls(text))):
                return True, compiled, STAGE_NAMES
        stage = STAGE_NO_NAMES
    if _needs_analysis_beyond_words(text, data, path, settings, rules):
        return True, compiled, STAGE_BEYOND
    return False, compiled, stage


# What may follow a called name before its `(`: blanks, line breaks, backslash continuations,
# comments, and the `)` of a parenthesised reference (`(loss.backward)()`). Or the name is
# imported under another (`from torch.autograd import backward as bw`), which the calls spell.
_CALL_TAIL = r"(?:(?:[ \t\r\n\f\v)\\]|#[^\r\n]*)*\(|[ \t\\]+as\s)"


@functools.lru_cache(maxsize=256)
def _called_pattern(name: str, binary: bool) -> "re.Pattern":
    """`name` spelled as a call: not the tail of a longer word, then `(` (see `_CALL_TAIL`)."""
    pattern = r"(?<![\w])" + re.escape(name) + _CALL_TAIL
    return re.compile(pattern.encode("utf-8", "surrogatepass") if binary else pattern)


def _may_name(spelled: Callable[[str], bool], autograd_named: bool, wanted: Wanted,
              called: Optional[Callable[[str], bool]] = None) -> bool:
    """Can stage two find a wanted name at all? A name the code reads is spelled in its text, so a
    file (or, in the helper search, a function's body) with a rule's word (`grad`,
    `requires_grad`) but none of the names (`backward`, `manual_backward`, a clip function,
    `training_step`, a configured helper; `grad` only where the module names `autograd`) is not
    compiled: about a quarter of the stage-one files of torch's sources. `spelled(name)`: does
    the text hold it?

    With `called(name)` (does the text hold it as a call? see `_CALL_TAIL`), narrowed to calls:
    every rule reports at a call of one of the names (`backward`, `manual_backward`, a clip
    function; `grad` where the module names `autograd`) or at what admits by being bound or
    passed (`training_step`, a configured helper, still `spelled`). Code that only reads a name
    (`torch.Tensor.backward` in a table of overrides, `hook = node.backward` kept for later) runs
    no backward of its own. On torch's sources this leaves 60 of the 134 files LibCST parsed (8
    only read a name, 66 called a helper that only reads one), with the same findings."""
    if called is None:
        called = spelled
    if autograd_named and any(called(name) for name in sorted(wanted.autograd_names)):
        return True
    if any(called(name) for name in sorted(wanted.names)):
        return True
    return any(spelled(name) for name in sorted(wanted.defines | wanted.helpers))


def _text_calls(text: str) -> Callable[[str], bool]:
    return lambda name: name in text and _called_pattern(name, False).search(text) is not None


def _may_name_bytes(data: bytes, start: int, end: int, wanted: Wanted) -> bool:
    """`_may_name`, narrowed to calls, for a function's body data[start:end] of a module's bytes
    (the helper search: a helper that only reads a name runs no backward for its callers)."""
    def spelled(name: str) -> bool:
        return data.find(name.encode("utf-8", "surrogatepass"), start, end) >= 0

    def called(name: str) -> bool:
        return spelled(name) and _called_pattern(name, True).search(data, start, end) is not None

    return _may_name(spelled, b"autograd" in data, wanted, called)


def _needs_analysis_beyond_words(text: str, data: Optional[bytes], path: str, settings,
                                 rules: List[Rule]) -> bool:
    """Words-only needs and imported helpers (see `prefilter`)."""
    lowered: Optional[str] = None
    for rule in rules:
        needs = rule.needs
        if needs.names or needs.autograd_names or not needs.words:
            continue
        if needs.fold_case and lowered is None:
            lowered = text.lower()
        haystack = lowered if needs.fold_case and lowered is not None else text
        if any(word in haystack for word in needs.words):
            return True
    root = getattr(settings, "root", None)
    if not root or not any(r.needs.helpers for r in rules):
        return False
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    return _PROJECT.helpers(data, path, os.path.abspath(root), search_wanted(settings))[0]


def helper_modules(data: bytes, path: str, settings) -> Dict[str, str]:
    """path -> sha256 of the project modules holding the helpers `path` calls (followed as the
    prefilter follows them): a helper edited in another module can change this file's findings."""
    wanted = search_wanted(settings)
    root = os.path.abspath(settings.root)
    return {m: _PROJECT.facts(m, wanted, root).sha for m in _PROJECT.helpers(data, path, root, wanted)[1]}
