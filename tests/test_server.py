"""`gradlint server` end to end: a real LSP client (pytest-lsp) drives the server process over stdio."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

BUGGY = textwrap.dedent(
    """\
    import torch
    import torch.nn.functional as F

    def train(model, loader, opt):
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
    """
)
FIXED = BUGGY.replace("    for x, y in loader:\n", "    for x, y in loader:\n        opt.zero_grad()\n")
assert FIXED != BUGGY
RETAIN = textwrap.dedent(
    """\
    import torch.nn.functional as F

    def train(model, loader, opt):
        for x, y in loader:
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward(retain_graph=True)
            opt.step()
    """
)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "gradlint", "server"]))
async def client(lsp_client: LanguageClient, tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "pyproject.toml").write_text("[tool.gradlint]\n")
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=pytest_lsp.client_capabilities("visual-studio-code"),
                               root_uri=root.as_uri(), workspace_folders=[
                                   types.WorkspaceFolder(uri=root.as_uri(), name="project")]))
    lsp_client.project_root = root  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


def _open(client: LanguageClient, name: str, text: str) -> str:
    uri = (client.project_root / name).as_uri()  # type: ignore[attr-defined]
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri


async def _diagnostics(client: LanguageClient, uri: str, until=lambda found: True, timeout: float = 30.0):
    """The diagnostics the server published for `uri`, once `until(them)` holds (polls the client)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = client.diagnostics.get(uri)
        if found is not None and until(found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no matching diagnostics for {uri}: {client.diagnostics.get(uri)}")


@pytest.mark.asyncio
async def test_open_change_clears_and_hover(client: LanguageClient):
    uri = _open(client, "train.py", BUGGY)
    found = await _diagnostics(client, uri)
    assert [d.code for d in found] == ["GL001"]
    diag = found[0]
    assert diag.source == "gradlint"
    assert diag.severity == types.DiagnosticSeverity.Error
    assert diag.range.start.line == 6  # `loss.backward()` on line 7, 0-based
    assert diag.range.start.character == 8

    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=6, character=10)))
    assert hover is not None and "GL001" in hover.contents.value

    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=FIXED)]))
    assert not await _diagnostics(client, uri, until=lambda found: not found)


@pytest.mark.asyncio
async def test_code_actions_fix_noqa_and_fix_all(client: LanguageClient):
    uri = _open(client, "retain.py", RETAIN)
    found = await _diagnostics(client, uri)
    assert [d.code for d in found] == ["GL002"]
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=found[0].range,
        context=types.CodeActionContext(diagnostics=found)))
    titles = [a.title for a in actions]
    fix = next(a for a in actions if a.title.startswith("Fix GL002"))
    assert fix.kind == types.CodeActionKind.QuickFix and fix.is_preferred
    (edit,) = fix.edit.changes[uri]
    lines = RETAIN.splitlines(keepends=True)
    # Apply the edit as an editor would: it must remove the argument and leave the call intact.
    assert edit.range.start.line == edit.range.end.line == 6
    line = lines[6]
    patched = line[: edit.range.start.character] + edit.new_text + line[edit.range.end.character:]
    assert patched.strip() == "loss.backward()"
    assert any(t == "Add `# noqa: GL002` on this line" for t in titles)
    noqa = next(a for a in actions if a.title.startswith("Add `# noqa"))
    (noqa_edit,) = noqa.edit.changes[uri]
    assert "# noqa: GL002" in noqa_edit.new_text
    fix_all = next(a for a in actions if a.kind == "source.fixAll.gradlint")
    assert fix_all.edit.changes[uri]

    only = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=found[0].range,
        context=types.CodeActionContext(diagnostics=found, only=["source.fixAll"])))
    assert [a.kind for a in only] == ["source.fixAll.gradlint"]


@pytest.mark.asyncio
async def test_unparsable_text_is_gl000_and_non_ascii_columns(client: LanguageClient):
    uri = _open(client, "broken.py", "import torch\nloss.backward(\n")
    found = await _diagnostics(client, uri)
    assert [d.code for d in found] == ["GL000"]
    text = BUGGY.replace("import torch\n", "import torch\ncafé = '😀'\n")
    uri2 = _open(client, "wide.py", text.replace("        loss.backward()", "        x = '😀'; loss.backward()"))
    found = await _diagnostics(client, uri2)
    assert [d.code for d in found] == ["GL001"]
    # '😀' is two UTF-16 code units: the column counts it twice, as LSP clients expect.
    assert found[0].range.start.character == len("        x = '😀'; ") + 1
