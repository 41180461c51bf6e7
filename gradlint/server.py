"""`gradlint server`: a Language Server over stdio, so editors show findings while you type.

Built on pygls (the server, the JSON-RPC transport, the document store) and lsprotocol (the
types). Every diagnostic comes from the same engine and settings as `gradlint check`: the nearest
`pyproject.toml`/`gradlint.toml` of the document, per-file-ignores and `# noqa` all apply.

What it offers:
- diagnostics when a document is opened or saved, and after typing pauses for `DEBOUNCE_S`
  seconds (a change made while a lint runs makes that result stale: it is dropped);
- code actions: each finding's fix (unsafe ones say so in the title and are never preferred),
  "add `# noqa: CODE`" on the finding's line, and "fix all" (`source.fixAll.gradlint`, safe
  fixes only);
- hover on a finding: the rule's summary and how to read its page (`gradlint explain CODE`).

Positions: gradlint counts 1-based lines and code-point columns; LSP counts 0-based lines and, by
default, UTF-16 code units. The conversion reads the document's own lines, so columns stay right
after non-ASCII text.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from gradlint import __version__
from gradlint.findings import Finding

DEBOUNCE_S = 0.35  # wait this long after the last keystroke before linting a changed document
SOURCE = "gradlint"
FIX_ALL_KIND = "source.fixAll.gradlint"
CATALOGUE_URL = "https://github.com/gradlint/gradlint/blob/main/rules"  # the project's rule pages

_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "note": types.DiagnosticSeverity.Information,
}


def uri_to_path(uri: str) -> str:
    """The file path of a `file:` URI; other schemes (untitled buffers) become their path part."""
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    if os.name == "nt" and path.startswith("/") and len(path) > 2 and path[2] == ":":
        path = path[1:]
    return path or uri


def line_starts(text: str) -> List[int]:
    """Offsets where each line starts; lines end at \\n, \\r\\n or \\r only, as Python's tokenizer
    (and the LSP specification) count them: form feeds or U+2028 do not start a line."""
    starts = [0]
    starts.extend(m.end() for m in re.finditer(r"\r\n|\r|\n", text))
    return starts


def minimal_edit(old: str, new: str) -> Optional[Tuple[int, int, str]]:
    """The one replacement (start, end, text) of old[start:end] that turns `old` into `new`, found by
    trimming their common prefix and suffix; None when they are equal. Small edits keep the
    editor's cursor and undo history where they were."""
    if old == new:
        return None
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old), len(new)
    while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
        end_old -= 1
        end_new -= 1
    return start, end_old, new[start:end_new]


class _Document:
    """One text and its line starts, for converting between gradlint's and LSP's positions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = line_starts(text)

    def _line_text(self, index: int) -> str:
        start = self.starts[index]
        end = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def position(self, line: int, column: int) -> types.Position:
        """LSP position of a 1-based line and 1-based code-point column."""
        index = min(max(line - 1, 0), len(self.starts) - 1)
        prefix = self._line_text(index)[: max(column - 1, 0)]
        return types.Position(line=index, character=len(prefix.encode("utf-16-le")) // 2)

    def position_of_offset(self, offset: int) -> types.Position:
        """LSP position of a character offset into the text."""
        offset = min(max(offset, 0), len(self.text))
        index = bisect.bisect_right(self.starts, offset) - 1
        return self.position(index + 1, offset - self.starts[index] + 1)

    def range(self, finding: Finding) -> types.Range:
        return types.Range(
            start=self.position(finding.line, finding.column),
            end=self.position(finding.end_line, finding.end_column),
        )

    def text_edit(self, start: int, end: int, new_text: str) -> types.TextEdit:
        return types.TextEdit(
            range=types.Range(start=self.position_of_offset(start), end=self.position_of_offset(end)),
            new_text=new_text,
        )


class GradlintServer(LanguageServer):
    """The language server: remembers each open document's latest findings for code actions."""

    def __init__(self) -> None:
        super().__init__("gradlint", __version__)
        self.findings: Dict[str, Tuple[int, List[Finding]]] = {}  # uri -> (version, findings)
        self._pending: Dict[str, asyncio.Task] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradlint-lint")

    # -- linting -------------------------------------------------------------------------------

    def lint_text(self, uri: str, text: str) -> List[Finding]:
        """Findings for a document's current text, with the settings `check` would use for it."""
        return lint_document(text, uri_to_path(uri))

    async def lint_and_publish(self, uri: str, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            document = self.workspace.get_text_document(uri)
        except KeyError:  # closed meanwhile
            return
        version = document.version or 0
        text = document.source
        loop = asyncio.get_running_loop()
        try:
            findings = await loop.run_in_executor(self._executor, self.lint_text, uri, text)
        except Exception as err:  # a gradlint bug must not take the editor's server down
            self.window_log_message(types.LogMessageParams(
                type=types.MessageType.Error, message=f"gradlint: internal error on {uri}: {err}"))
            return
        current = self.workspace.get_text_document(uri)
        if (current.version or 0) != version or current.source != text:
            return  # the user typed meanwhile; the debounced lint of the new text will publish
        self.findings[uri] = (version, findings)
        doc = _Document(text)
        diagnostics = [to_diagnostic(doc, f) for f in findings]
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, version=version, diagnostics=diagnostics))

    def schedule(self, uri: str, delay: float) -> None:
        """Lint `uri` after `delay` seconds, cancelling a lint still waiting for the same document."""
        previous = self._pending.pop(uri, None)
        if previous is not None and not previous.done():
            previous.cancel()
        self._pending[uri] = asyncio.ensure_future(self.lint_and_publish(uri, delay))

    def forget(self, uri: str) -> None:
        task = self._pending.pop(uri, None)
        if task is not None and not task.done():
            task.cancel()
        self.findings.pop(uri, None)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def to_diagnostic(doc: _Document, finding: Finding) -> types.Diagnostic:
    url = rule_page_url(finding.code)
    return types.Diagnostic(
        range=doc.range(finding),
        message=finding.message,
        severity=_SEVERITY.get(finding.severity, types.DiagnosticSeverity.Warning),
        code=finding.code,
        code_description=types.CodeDescription(href=url) if url else None,
        source=SOURCE,
        data={"fixable": finding.fix is not None},
    )


def _matching(findings: Sequence[Finding], doc: _Document, diagnostic: types.Diagnostic) -> Optional[Finding]:
    for finding in findings:
        if finding.code == diagnostic.code and doc.range(finding) == diagnostic.range:
            return finding
    return None


def code_actions(uri: str, text: str, findings: Sequence[Finding],
                 params: types.CodeActionParams) -> List[types.CodeAction]:
    """The quick fixes for the diagnostics in `params.context`, then "fix all" for the document."""
    doc = _Document(text)
    wanted = params.context.only
    actions: List[types.CodeAction] = []

    def allowed(kind: str) -> bool:
        return not wanted or any(kind == w or kind.startswith(w + ".") for w in wanted)

    def edit_for(new_text: str) -> Optional[types.WorkspaceEdit]:
        change = minimal_edit(text, new_text)
        if change is None:
            return None
        start, end, replacement = change
        return types.WorkspaceEdit(changes={uri: [doc.text_edit(start, end, replacement)]})

    if allowed(types.CodeActionKind.QuickFix):
        for diagnostic in params.context.diagnostics:
            if diagnostic.source != SOURCE:
                continue
            finding = _matching(findings, doc, diagnostic)
            if finding is None:
                continue
            fix = finding.fix
            if fix is not None and fix.edits:
                unsafe = fix.applicability == "unsafe"
                title = f"Fix {finding.code}: {fix.description}" + (" (unsafe)" if unsafe else "")
                edits = [doc.text_edit(e.start, e.end, e.text) for e in sorted(fix.edits, key=lambda e: e.start)]
                actions.append(types.CodeAction(
                    title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diagnostic],
                    is_preferred=not unsafe, edit=types.WorkspaceEdit(changes={uri: edits})))
            noqa = edit_for(add_noqa_text(text, finding))
            if noqa is not None:
                actions.append(types.CodeAction(
                    title=f"Add `# noqa: {finding.code}` on this line", kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic], edit=noqa))
    if allowed(FIX_ALL_KIND) and any(f.fix is not None for f in findings):
        fixed = edit_for(apply_safe_fixes(text, findings))
        if fixed is not None:
            actions.append(types.CodeAction(title="gradlint: fix all safe fixes", kind=FIX_ALL_KIND, edit=fixed))
    return actions


def hover_text(findings: Sequence[Finding], doc: _Document, position: types.Position) -> Optional[str]:
    lines = []
    for finding in findings:
        where = doc.range(finding)
        after_start = (position.line, position.character) >= (where.start.line, where.start.character)
        before_end = (position.line, position.character) <= (where.end.line, where.end.character)
        if after_start and before_end:
            lines.append(f"**{finding.code}** {finding.name}: {rule_summary(finding.code)}  \n"
                         f"Run `gradlint explain {finding.code}` for the rule's page.")
    return "\n\n".join(lines) or None


def build_server() -> GradlintServer:
    """A server with every feature registered (a fresh one per call: tests start several)."""
    server = GradlintServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: GradlintServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: GradlintServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, DEBOUNCE_S)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: GradlintServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: GradlintServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL_KIND]),
    )
    def code_action(ls: GradlintServer, params: types.CodeActionParams) -> List[types.CodeAction]:
        uri = params.text_document.uri
        document = ls.workspace.get_text_document(uri)
        version, findings = ls.findings.get(uri, (None, []))
        if version != (document.version or 0):
            findings = ls.lint_text(uri, document.source)  # stale: lint what the editor now holds
        return code_actions(uri, document.source, findings, params)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: GradlintServer, params: types.HoverParams) -> Optional[types.Hover]:
        uri = params.text_document.uri
        document = ls.workspace.get_text_document(uri)
        _version, findings = ls.findings.get(uri, (None, []))
        text = hover_text(findings, _Document(document.source), params.position)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    return server


def main() -> None:
    """Serve over stdio until the client says exit."""
    build_server().start_io()


# -- the engine, seen from the editor ---------------------------------------------------------


def lint_document(text: str, path: str) -> List[Finding]:
    """What `gradlint check` reports for `path` if it held `text`: the nearest config of the file's
    folder, per-file-ignores and noqa applied. A configuration error becomes one log line and no
    diagnostics (the editor keeps working); a file that does not parse is a GL000 diagnostic."""
    from gradlint.analysis.imports import forget_files
    from gradlint.config import load_settings
    from gradlint.engine import lint_source
    from gradlint.prefilter import forget_answers

    forget_files()  # each lint is a run of its own: other files may have changed since the last
    forget_answers()
    folder = os.path.dirname(os.path.abspath(path)) if os.path.isabs(path) else os.getcwd()
    settings = load_settings(folder)
    return lint_source(text, path, settings)


def apply_safe_fixes(text: str, findings: Sequence[Finding]) -> str:
    """`text` with every safe fix applied (what `gradlint check --fix` writes)."""
    from gradlint.fixes import apply_fixes

    safe = [f for f in findings if f.fix is not None and f.fix.applicability == "safe"]
    return apply_fixes(text, safe)[0]


def add_noqa_text(text: str, finding: Finding) -> str:
    """`text` with `# noqa: CODE` for this finding on its line (merged into an existing directive)."""
    from gradlint.fixes import add_noqa

    return add_noqa(text, [finding])[0]


def rule_summary(code: str) -> str:
    from gradlint.findings import RULES

    info = RULES.get(code)
    return info.summary if info else ""


def rule_page_url(code: str) -> Optional[str]:
    """Where the rule's page is published (the catalogue in the repository), if the project has one."""
    from gradlint.findings import RULES

    return f"{CATALOGUE_URL}/{code}.md" if code in RULES else None
