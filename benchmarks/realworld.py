#!/usr/bin/env python3
"""Score gradlint's rules on real public training code at pinned commits.

The cases live in ``benchmarks/realworld/glNNN.toml`` (one file per rule, named after it). A
case names a public repository, a commit, and either the place where a reported bug sits
(``kind = "bug"``: the rule must report it there) or correct code that looks suspicious
(``kind = "clean"``: the rule must stay silent). The code itself is never copied into this
repository: the script reads it from local bare mirrors of the repositories (``--mirrors`` or
``GRADLINT_MIRRORS``), extracts each pinned commit once into a work directory and runs
``gradlint check`` there, as a new user would run it from the repository root.

Per rule it prints cases, true positives, false negatives, false positives, recall and
precision. Findings in bug cases at other places than the marked one are listed for manual
review and are not counted either way. Exit status: 0 once scored (whatever the numbers);
2 when a case file is malformed, no mirror directory is given, gradlint cannot be run, or a
case's repository or commit is not in the mirrors (those cases are reported as ``missing``
first, unless ``--allow-missing``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Sequence, Tuple

CASES_DIR = Path(__file__).resolve().parent / "realworld"
RULE_FILE = re.compile(r"^(gl\d{3})\.toml$", re.IGNORECASE)
SHA = re.compile(r"^[0-9a-f]{40}$")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
KINDS = ("bug", "clean")
DONE_MARK = ".realworld-extracted"


class Malformed(Exception):
    """A case file or a case that cannot be scored as written."""


class SetupError(Exception):
    """The scorer cannot run at all (gradlint missing), whatever the case."""


class MirrorMissing(Exception):
    """The repository or the commit a case needs is not in the mirrors."""


@dataclass
class Case:
    """One entry of a rule's case file."""

    rule: str
    id: str
    repo: str
    commit: str
    kind: str
    lint: List[str]
    source: str
    note: str
    path: Optional[str] = None
    line_lo: Optional[int] = None
    line_hi: Optional[int] = None
    origin: str = ""

    def where(self) -> str:
        if self.path is None:
            return ""
        if self.line_lo == self.line_hi:
            return f"{self.path}:{self.line_lo}"
        return f"{self.path}:{self.line_lo}-{self.line_hi}"


@dataclass
class Outcome:
    """What gradlint reported on one case, and what that counts as."""

    case: Case
    status: str  # tp, fn, fp, tn, missing, error
    hits: List[Dict[str, Any]] = field(default_factory=list)  # findings at the marked place
    others: List[Dict[str, Any]] = field(default_factory=list)  # findings elsewhere
    detail: str = ""


def load_toml(path: Path) -> Dict[str, Any]:
    """Parse a TOML file with tomllib (3.11+) or tomli."""
    try:
        import tomllib as toml_mod  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as toml_mod  # type: ignore[import-not-found,no-redef]
        except ImportError as exc:
            raise Malformed("reading the case files needs Python 3.11+ or the tomli package") from exc
    try:
        with path.open("rb") as fh:
            return toml_mod.load(fh)
    except (OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise Malformed(f"{path}: {exc}") from exc


def _rel_path(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"{where}: `{what}` must be a non-empty string")
    p = PurePosixPath(value.strip())
    if p.is_absolute() or ".." in p.parts or "\\" in value:
        raise Malformed(f"{where}: `{what}` = {value!r} must be a repository-relative path")
    return str(p)


def parse_case(rule: str, raw: Any, where: str) -> Case:
    """Check one ``[[case]]`` table and turn it into a Case."""
    if not isinstance(raw, dict):
        raise Malformed(f"{where}: a case must be a table")
    known = {"id", "repo", "commit", "kind", "path", "line", "lines", "lint", "source", "note"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise Malformed(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("id", "repo", "commit", "kind", "lint", "source", "note"):
        if key not in raw:
            raise Malformed(f"{where}: missing `{key}`")
    cid = raw["id"]
    if not isinstance(cid, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", cid):
        raise Malformed(f"{where}: `id` must be a plain word (letters, digits, - _ .)")
    where = f"{where} ({cid})"
    repo = raw["repo"]
    if not isinstance(repo, str) or not REPO.match(repo):
        raise Malformed(f"{where}: `repo` must be owner/name")
    commit = raw["commit"]
    if not isinstance(commit, str) or not SHA.match(commit):
        raise Malformed(f"{where}: `commit` must be a full 40-hex lowercase sha")
    kind = raw["kind"]
    if kind not in KINDS:
        raise Malformed(f"{where}: `kind` must be one of {', '.join(KINDS)}")
    lint = raw["lint"]
    if isinstance(lint, str):
        lint = [lint]
    if not isinstance(lint, list) or not lint:
        raise Malformed(f"{where}: `lint` must be a non-empty list of paths")
    lint = [_rel_path(v, "lint", where) for v in lint]
    for key in ("source", "note"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise Malformed(f"{where}: `{key}` must be a non-empty string")
    case = Case(
        rule=rule,
        id=cid,
        repo=repo,
        commit=commit,
        kind=kind,
        lint=lint,
        source=raw["source"].strip(),
        note=raw["note"].strip(),
        origin=where,
    )
    has_line = "line" in raw
    has_lines = "lines" in raw
    if kind == "bug":
        case.path = _rel_path(raw.get("path"), "path", where)
        if has_line == has_lines:
            raise Malformed(f"{where}: a bug case needs exactly one of `line` or `lines`")
        if has_line:
            line = raw["line"]
            if not isinstance(line, int) or isinstance(line, bool) or line < 1:
                raise Malformed(f"{where}: `line` must be a positive integer")
            case.line_lo = case.line_hi = line
        else:
            rng = raw["lines"]
            if (
                not isinstance(rng, list)
                or len(rng) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in rng)
                or rng[0] > rng[1]
            ):
                raise Malformed(f"{where}: `lines` must be [first, last] with 1 <= first <= last")
            case.line_lo, case.line_hi = rng[0], rng[1]
    else:
        if "path" in raw or has_line or has_lines:
            raise Malformed(f"{where}: a clean case takes no `path`, `line` or `lines`")
    return case


def load_cases(cases_dir: Path, rules: Optional[Sequence[str]]) -> List[Case]:
    """Read every ``glNNN.toml`` under cases_dir (only the selected rules)."""
    if not cases_dir.is_dir():
        raise Malformed(f"no case directory {cases_dir}")
    cases: List[Case] = []
    seen: Dict[str, str] = {}
    for path in sorted(cases_dir.iterdir()):
        m = RULE_FILE.match(path.name)
        if not m:
            continue
        rule = m.group(1).upper()
        if rules and rule not in rules:
            continue
        data = load_toml(path)
        unknown = sorted(set(data) - {"case"})
        if unknown:
            raise Malformed(f"{path}: unknown top-level key(s) {', '.join(unknown)}; cases are [[case]] tables")
        raw_cases = data.get("case", [])
        if not isinstance(raw_cases, list):
            raise Malformed(f"{path}: `case` must be an array of tables ([[case]])")
        for i, raw in enumerate(raw_cases, 1):
            case = parse_case(rule, raw, f"{path.name} case #{i}")
            if case.id in seen:
                raise Malformed(f"{case.origin}: id also used in {seen[case.id]}")
            seen[case.id] = case.origin
            cases.append(case)
    return cases


def find_git_dir(mirrors: Path, repo: str) -> Optional[Path]:
    """The bare git directory holding owner/name under the mirrors directory.

    The `fetch` tool lays a repository out as ``<mirrors>/owner+name/repo`` (sometimes
    ``.../repo/.git``); plain
    ``owner/name(.git)`` and ``owner+name(.git)`` layouts (a ``git clone --mirror``) work too.
    """
    owner, name = repo.split("/", 1)
    candidates = [
        mirrors / f"{owner}+{name}" / "repo",
        mirrors / f"{owner}+{name}" / "repo" / ".git",
        mirrors / f"{owner}+{name}",
        mirrors / f"{owner}+{name}.git",
        mirrors / owner / name,
        mirrors / owner / f"{name}.git",
        mirrors / owner / name / ".git",
    ]
    for cand in candidates:
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def has_commit(git_dir: Path, commit: str) -> bool:
    proc = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "-e", f"{commit}^{{commit}}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc.returncode == 0


def extract(git_dir: Path, repo: str, commit: str, work: Path) -> Path:
    """Extract the commit's tree once under work; later calls reuse it.

    `git archive` is tried first. Mirrors made by the `fetch` tool leave out large files
    (4 MiB and more), which makes `git archive` fail on a missing object; then the tree is
    written file by file and the absent blobs (data, media, weights, never Python sources
    that matter here) are skipped and counted in the marker file.
    """
    dest = work / repo.replace("/", "+") / commit
    if (dest / DONE_MARK).is_file():
        return dest
    if dest.exists():  # a run interrupted mid-extraction
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=dest.parent))
    try:
        skipped = _extract_archive(git_dir, commit, tmp)
        if skipped is None:
            shutil.rmtree(tmp)
            tmp.mkdir()
            skipped = _extract_blobs(git_dir, repo, commit, tmp)
        (tmp / DONE_MARK).write_text(
            f"{repo} {commit}\nskipped {len(skipped)} absent blob(s)\n" + "".join(f"  {p}\n" for p in skipped)
        )
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _extract_archive(git_dir: Path, commit: str, dest: Path) -> Optional[List[str]]:
    """`git archive | tar -x` in Python; None when git cannot archive the whole tree."""
    with tempfile.TemporaryFile() as tar_buf:
        proc = subprocess.run(
            ["git", "--git-dir", str(git_dir), "archive", "--format=tar", commit],
            stdout=tar_buf,
            stderr=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            return None
        tar_buf.seek(0)
        with tarfile.open(fileobj=tar_buf, mode="r:") as tar:
            members = [m for m in tar.getmembers() if _safe_member(m)]
            if hasattr(tarfile, "data_filter"):  # Python 3.12+ (and security backports)
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)
    return []


def _extract_blobs(git_dir: Path, repo: str, commit: str, dest: Path) -> List[str]:
    """Write every regular file of the commit's tree whose blob is present; list the others."""
    ls = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", "--full-tree", commit],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if ls.returncode != 0:
        raise MirrorMissing(f"{repo}@{commit[:12]}: git ls-tree failed: {ls.stderr.decode(errors='replace').strip()}")
    entries: List[Tuple[str, str]] = []
    for rec in ls.stdout.split(b"\0"):
        if not rec:
            continue
        meta, _, raw_path = rec.partition(b"\t")
        mode, kind, sha = meta.decode().split()
        path = raw_path.decode("utf-8", errors="surrogateescape")
        p = PurePosixPath(path)
        if kind != "blob" or mode not in ("100644", "100755") or p.is_absolute() or ".." in p.parts:
            continue  # links, submodules, odd names
        entries.append((sha, path))
    skipped: List[str] = []
    if not entries:
        return skipped
    proc = subprocess.Popen(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for sha, path in entries:
            proc.stdin.write(sha.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob":
                skipped.append(path)  # "<sha> missing": left out of the mirror
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after the content
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    finally:
        proc.stdin.close()
        proc.wait()
    return skipped


def _safe_member(member: tarfile.TarInfo) -> bool:
    """Only regular files and folders inside the tree (no links, devices or `..`)."""
    p = PurePosixPath(member.name)
    if p.is_absolute() or ".." in p.parts:
        return False
    return member.isfile() or member.isdir()


def run_gradlint(
    cmd: List[str], tree: Path, rule: str, lint: Sequence[str], timeout: float, extra: Sequence[str]
) -> Tuple[Optional[List[Dict[str, Any]]], str]:
    """Run the check in the extracted tree; (findings, "") or (None, why it failed)."""
    argv = [
        *cmd,
        "check",
        "--isolated",
        "--no-cache",
        "--exit-zero",
        "--quiet",
        "--output-format",
        "json",
        "--select",
        rule,
        *extra,
        "--",
        *lint,
    ]
    try:
        proc = subprocess.run(argv, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except (FileNotFoundError, PermissionError) as exc:
        raise SetupError(f"cannot run {cmd[0]!r}: {exc.strerror} (not on PATH? use --gradlint)") from exc
    except subprocess.TimeoutExpired:
        return None, f"gradlint ran past {timeout:g}s"
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        tail = err.splitlines()[-1] if err else out.strip()[-200:]
        return None, f"gradlint exited {proc.returncode}: {tail}"
    try:
        data = json.loads(out or "[]")
    except ValueError:
        return None, f"gradlint printed no JSON: {out.strip()[:200]!r}"
    if not isinstance(data, list):
        return None, "gradlint's JSON is not a list of findings"
    findings = []
    for item in data:
        if isinstance(item, dict) and item.get("code") == rule:
            item = dict(item)
            item["path"] = _norm_finding_path(str(item.get("path", "")), tree)
            findings.append(item)
    return findings, ""


def _norm_finding_path(path: str, tree: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(tree.resolve())
        except ValueError:
            return path
    return PurePosixPath(*p.parts).as_posix() if p.parts else path


def score_case(case: Case, findings: List[Dict[str, Any]]) -> Outcome:
    if case.kind == "clean":
        return Outcome(case, "fp" if findings else "tn", others=findings)
    hits: List[Dict[str, Any]] = []
    others: List[Dict[str, Any]] = []
    for f in findings:
        line = f.get("line")
        at = (
            f.get("path") == case.path
            and isinstance(line, int)
            and case.line_lo is not None
            and case.line_hi is not None
            and case.line_lo <= line <= case.line_hi
        )
        (hits if at else others).append(f)
    return Outcome(case, "tp" if hits else "fn", hits=hits, others=others)


def evaluate(
    cases: List[Case], mirrors: Path, work: Path, cmd: List[str], timeout: float, extra: Sequence[str], progress: bool
) -> List[Outcome]:
    outcomes: List[Outcome] = []
    runs: Dict[Tuple[str, str, str, Tuple[str, ...]], Tuple[Optional[List[Dict[str, Any]]], str]] = {}
    for n, case in enumerate(cases, 1):
        if progress:
            print(f"[{n}/{len(cases)}] {case.rule} {case.id}", file=sys.stderr, flush=True)
        git_dir = find_git_dir(mirrors, case.repo)
        if git_dir is None:
            outcomes.append(Outcome(case, "missing", detail=f"no mirror of {case.repo} under {mirrors}"))
            continue
        if not has_commit(git_dir, case.commit):
            outcomes.append(Outcome(case, "missing", detail=f"commit {case.commit[:12]} not in {git_dir}"))
            continue
        try:
            tree = extract(git_dir, case.repo, case.commit, work)
        except (MirrorMissing, OSError, tarfile.TarError) as exc:
            outcomes.append(Outcome(case, "error", detail=f"extracting: {exc}"))
            continue
        absent = [p for p in case.lint if not (tree / p).exists()]
        if case.path is not None and not (tree / case.path).is_file():
            absent.append(case.path)
        if absent:
            outcomes.append(
                Outcome(case, "error", detail=f"not in the tree at {case.commit[:12]}: " + ", ".join(absent))
            )
            continue
        key = (case.repo, case.commit, case.rule, tuple(case.lint))
        if key not in runs:
            runs[key] = run_gradlint(cmd, tree, case.rule, case.lint, timeout, extra)
        findings, why = runs[key]
        if findings is None:
            outcomes.append(Outcome(case, "error", detail=why))
            continue
        outcomes.append(score_case(case, findings))
    return outcomes


def _ratio(num: int, den: int) -> Optional[float]:
    return None if den == 0 else num / den


def summarise(outcomes: List[Outcome]) -> Dict[str, Dict[str, Any]]:
    table: Dict[str, Dict[str, Any]] = {}
    for o in outcomes:
        row = table.setdefault(
            o.case.rule,
            {
                "cases": 0,
                "bug": 0,
                "clean": 0,
                "tp": 0,
                "fn": 0,
                "fp": 0,
                "fp_cases": 0,
                "missing": 0,
                "error": 0,
                "review": 0,
                "bug_errors": 0,
            },
        )
        row["cases"] += 1
        row[o.case.kind] += 1
        if o.status == "tp":
            row["tp"] += 1
        elif o.status == "fn":
            row["fn"] += 1
        elif o.status == "fp":
            row["fp"] += len(o.others)
            row["fp_cases"] += 1
        elif o.status in ("missing", "error"):
            row[o.status] += 1
            if o.status == "error" and o.case.kind == "bug":
                row["bug_errors"] += 1
        if o.case.kind == "bug":
            row["review"] += len(o.others)
    for row in table.values():
        # A bug case gradlint could not be run on is a miss for the user, not a skipped case.
        row["recall"] = _ratio(row["tp"], row["tp"] + row["fn"] + row.pop("bug_errors"))
        row["precision"] = _ratio(row["tp"], row["tp"] + row["fp"])
    return dict(sorted(table.items()))


def _fmt(x: Optional[float]) -> str:
    return "  n/a" if x is None else f"{x:5.2f}"


def _finding_text(f: Dict[str, Any]) -> str:
    msg = str(f.get("message", "")).replace("\n", " ")
    if len(msg) > 110:
        msg = msg[:107] + "..."
    return f"{f.get('path')}:{f.get('line')}: {msg}"


def print_report(outcomes: List[Outcome], verbose: bool) -> None:
    table = summarise(outcomes)
    if not table:
        print("no cases")
        return
    head = (
        f"{'rule':<6} {'cases':>5} {'bug':>4} {'clean':>5} {'TP':>4} {'FN':>4} {'FP':>4} "
        f"{'recall':>6} {'prec':>6} {'missing':>7} {'error':>5}"
    )
    print(head)
    print("-" * len(head))
    for rule, r in table.items():
        print(
            f"{rule:<6} {r['cases']:>5} {r['bug']:>4} {r['clean']:>5} {r['tp']:>4} {r['fn']:>4} "
            f"{r['fp']:>4} {_fmt(r['recall']):>6} {_fmt(r['precision']):>6} {r['missing']:>7} "
            f"{r['error']:>5}"
        )
    print(
        "(FP counts findings in clean cases; recall counts bug cases gradlint failed on as misses;"
        " missing cases are left out)"
    )
    marks = {"tp": "✓ TP", "tn": "✓ clean", "fn": "✗ FN", "fp": "✗ FP", "missing": "? missing", "error": "! error"}
    for rule in table:
        rows = [o for o in outcomes if o.case.rule == rule]
        bad = [o for o in rows if o.status in ("missing", "error")]
        if verbose:
            print(f"\n{rule} cases:")
            for o in rows:
                place = o.case.where() if o.case.kind == "bug" else "(clean)"
                print(f"  {marks[o.status]:<9} {o.case.id:<40} {o.case.repo}@{o.case.commit[:10]} {place}")
                if o.status == "fp":
                    for f in o.others:
                        print(f"      false positive: {_finding_text(f)}")
                if o.detail:
                    print(f"      {o.detail}")
        elif bad:
            print(f"\n{rule}: cases not scored")
            for o in bad:
                print(f"  {marks[o.status]:<9} {o.case.id}: {o.detail}")
        review = [(o, f) for o in rows if o.case.kind == "bug" for f in o.others]
        if review:
            print(f"\n{rule}: findings in bug cases away from the marked line (not counted; review by hand)")
            for o, f in review:
                print(f"  {o.case.id}: {_finding_text(f)}")


def as_json(outcomes: List[Outcome]) -> Dict[str, Any]:
    return {
        "rules": summarise(outcomes),
        "cases": [
            {
                "rule": o.case.rule,
                "id": o.case.id,
                "repo": o.case.repo,
                "commit": o.case.commit,
                "kind": o.case.kind,
                "where": o.case.where() or None,
                "status": o.status,
                "detail": o.detail or None,
                "hits": o.hits,
                "others": o.others,
            }
            for o in outcomes
        ],
    }


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mirrors", help="folder holding the fetched bare mirrors (env GRADLINT_MIRRORS)")
    ap.add_argument(
        "--work",
        help="where pinned commits are extracted and kept between runs "
        "(env GRADLINT_REALWORLD_WORK; default: a new temporary folder)",
    )
    ap.add_argument("--cases", default=str(CASES_DIR), help="folder of glNNN.toml case files")
    ap.add_argument(
        "--rule", action="append", default=[], help="score only this rule (repeatable or comma-separated), e.g. GL003"
    )
    ap.add_argument("--case", action="append", default=[], help="score only the case with this id")
    ap.add_argument("--gradlint", default="gradlint", help="command that runs gradlint (default: gradlint on PATH)")
    ap.add_argument("--gradlint-args", default="", help="extra options for `gradlint check`, e.g. '-j 1'")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per gradlint run (default 600)")
    ap.add_argument(
        "--allow-missing",
        action="store_true",
        help="exit 0 even when some cases' repositories or commits are not in the mirrors",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--progress", action="store_true", help="name each case on stderr as it runs")
    ap.add_argument(
        "--list-repos",
        action="store_true",
        help="print the owner/name of every repository the selected cases need (to fetch them), then exit",
    )
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rules = sorted({r.strip().upper() for v in args.rule for r in v.split(",") if r.strip()})
    bad_rules = [r for r in rules if not re.match(r"^GL\d{3}$", r)]
    if bad_rules:
        print(f"realworld: not a rule code: {', '.join(bad_rules)}", file=sys.stderr)
        return 2
    try:
        cases = load_cases(Path(args.cases), rules or None)
    except Malformed as exc:
        print(f"realworld: malformed case: {exc}", file=sys.stderr)
        return 2
    if args.list_repos:
        for repo in sorted({c.repo for c in cases}, key=str.lower):
            print(repo)
        return 0
    if args.case:
        wanted = set(args.case)
        unknown = sorted(wanted - {c.id for c in cases})
        if unknown:
            print(f"realworld: no case with id {', '.join(unknown)}", file=sys.stderr)
            return 2
        cases = [c for c in cases if c.id in wanted]
    mirrors_arg = args.mirrors or os.environ.get("GRADLINT_MIRRORS")
    if not mirrors_arg:
        print("realworld: say where the mirrors are: --mirrors DIR or GRADLINT_MIRRORS=DIR", file=sys.stderr)
        return 2
    mirrors = Path(mirrors_arg).expanduser()
    if not mirrors.is_dir():
        print(f"realworld: mirror folder {mirrors} does not exist", file=sys.stderr)
        return 2
    try:
        cmd = shlex.split(args.gradlint)
        extra = shlex.split(args.gradlint_args)
    except ValueError as exc:
        print(f"realworld: cannot split --gradlint/--gradlint-args: {exc}", file=sys.stderr)
        return 2
    if not cmd:
        print("realworld: --gradlint is empty", file=sys.stderr)
        return 2
    work_arg = args.work or os.environ.get("GRADLINT_REALWORLD_WORK")
    tmp_work = None
    if work_arg:
        work = Path(work_arg).expanduser()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp_work = tempfile.mkdtemp(prefix="gradlint-realworld-")
        work = Path(tmp_work)
    try:
        outcomes = evaluate(cases, mirrors, work, cmd, args.timeout, extra, args.progress)
    except SetupError as exc:
        print(f"realworld: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp_work:
            shutil.rmtree(tmp_work, ignore_errors=True)
    if args.json:
        print(json.dumps(as_json(outcomes), indent=2))
    else:
        print_report(outcomes, args.verbose)
    missing = sorted({o.case.repo for o in outcomes if o.status == "missing"})
    if missing and not args.allow_missing:
        print(
            f"realworld: {sum(o.status == 'missing' for o in outcomes)} case(s) not scored, their "
            f"repository or commit is not in {mirrors}: {', '.join(missing)} (fetch them, or "
            f"--allow-missing)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
