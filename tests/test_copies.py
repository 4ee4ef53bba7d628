"""`# Copied from` markers: a copied block must stay identical to its source, modulo the stated replacements.

A marker sits on the line right above a `def`, a `class` (above its decorators, if any) or a module-level assignment
(`NAME = ...`), the transformers way:

    # Copied from lmforge.models.aksis.modeling_aksis.AksisAttention with Aksis->CharTransformer

`with A->B, C->D` lists plain-text replacements applied, in order, to the source before comparing. The source object
is read from its file with `ast` (no import), so the check works on any model folder.
"""

import ast
import difflib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MODELING_FILES = sorted((SRC / "lmforge" / "models").glob("*/modeling_*.py"))
# Every module of the package is scanned: a copy anywhere in src/ must carry its marker and stay identical.
SOURCE_FILES = sorted((SRC / "lmforge").rglob("*.py"))

MARKER = re.compile(
    r"^[ \t]*# Copied from (?P<target>lmforge(?:\.\w+)+)(?:[ \t]+with[ \t]+(?P<replacements>\S.*?))?[ \t]*$"
)


@dataclass
class CopyMarker:
    """One `# Copied from` marker and the code object right below it."""

    where: str  # "path:line" of the marker, for messages and test ids
    target: str  # dotted path of the source object, e.g. lmforge.models.aksis.modeling_aksis.AksisAttention
    replacements: list[tuple[str, str]]
    code: str  # the copied object's source, dedented


def parse_replacements(text: str | None) -> list[tuple[str, str]]:
    """`"A->B, C->D"` -> `[("A", "B"), ("C", "D")]`."""
    if not text:
        return []
    pairs = []
    for item in text.split(","):
        old, arrow, new = item.strip().partition("->")
        if not arrow or not old.strip():
            raise ValueError(f"Bad replacement {item!r} in a Copied from marker; write 'Old->New'.")
        pairs.append((old.strip(), new.strip()))
    return pairs


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Assign


def _definitions(tree: ast.Module) -> dict[str, Definition]:
    """Every def/class of a module by qualified name ("Class", "Class.method", "function"), and every module-level
    assignment to one name ("CONSTANT")."""
    found: dict[str, Definition] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found[prefix + node.name] = node
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")
            elif not prefix and isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    found[target.id] = node

    visit(tree.body, "")
    return found


def _start(node: Definition) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(decorator.lineno for decorator in decorators)])


def _segment(lines: list[str], node: Definition) -> str:
    start = _start(node)
    assert node.end_lineno is not None
    return textwrap.dedent("\n".join(lines[start - 1 : node.end_lineno]))


def find_markers(source: str, filename: str) -> list[CopyMarker]:
    """The markers of one module's text, each with the code of the def/class that starts on the next line."""
    lines = source.splitlines()
    starts = {}
    for node in _definitions(ast.parse(source)).values():
        starts[_start(node)] = node
    markers = []
    for number, line in enumerate(lines, start=1):
        match = MARKER.match(line)
        if match is None:
            continue
        below = starts.get(number + 1)
        if below is None:
            raise ValueError(
                f"{filename}:{number}: a Copied from marker must sit right above a def, a class or an assignment."
            )
        markers.append(
            CopyMarker(
                where=f"{filename}:{number}",
                target=match["target"],
                replacements=parse_replacements(match["replacements"]),
                code=_segment(lines, below),
            )
        )
    return markers


def source_of(target: str) -> str:
    """The dedented source of `lmforge.<module path>.<qualified name>`, read from its file under src/."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        path = SRC.joinpath(*parts[:split]).with_suffix(".py")
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            name = ".".join(parts[split:])
            node = _definitions(ast.parse(text)).get(name)
            if node is None:
                raise LookupError(f"{name} is not defined in {path}.")
            return _segment(text.splitlines(), node)
    raise LookupError(f"No module file under {SRC} for {target}.")


def copy_mismatch(marker: CopyMarker) -> str | None:
    """None when the copy equals the source after the replacements, else a unified diff to show."""
    expected = source_of(marker.target)
    for old, new in marker.replacements:
        expected = expected.replace(old, new)
    if expected == marker.code:
        return None
    diff = difflib.unified_diff(
        expected.splitlines(), marker.code.splitlines(), "source (after replacements)", "copy", lineterm=""
    )
    return f"{marker.where}: copy of {marker.target} differs from its source:\n" + "\n".join(diff)


def all_markers() -> list[CopyMarker]:
    markers = []
    for path in SOURCE_FILES:
        markers.extend(find_markers(path.read_text(encoding="utf-8"), str(path.relative_to(SRC.parent))))
    return markers


MARKERS = all_markers()


def test_there_are_markers_to_check() -> None:
    assert MODELING_FILES, "no modeling files found: the scan is looking in the wrong place"
    assert MARKERS, "no '# Copied from' marker found in any modeling file"
    char_targets = {marker.target for marker in MARKERS if "char_transformer" in marker.where}
    assert "lmforge.models.aksis.modeling_aksis.AksisAttention" in char_targets
    assert "lmforge.models.aksis.modeling_aksis.AksisModel.forward" in char_targets  # AksisModel minus its final norm
    reasoner_targets = {marker.target for marker in MARKERS if "latent_reasoner" in marker.where}
    assert "lmforge.models.ae_llm.modeling_ae_llm.shift_tokens_right" in reasoner_targets


@pytest.mark.parametrize("marker", MARKERS, ids=[f"{m.where}->{m.target.rsplit('.', 1)[-1]}" for m in MARKERS])
def test_copy_matches_its_source(marker: CopyMarker) -> None:
    mismatch = copy_mismatch(marker)
    assert mismatch is None, mismatch


# --- the checker itself ---

FAKE_MODULE = """
from torch import nn

{marker}
{code}
"""


def _fake_copy(edit: tuple[str, str] | None = None) -> str:
    """A module holding a copy of AksisAttention renamed to FakeAttention, optionally with one textual edit."""
    code = source_of("lmforge.models.aksis.modeling_aksis.AksisAttention").replace("Aksis", "Fake")
    if edit is not None:
        assert edit[0] in code, edit
        code = code.replace(edit[0], edit[1], 1)
    marker = "# Copied from lmforge.models.aksis.modeling_aksis.AksisAttention with Aksis->Fake"
    return FAKE_MODULE.format(marker=marker, code=code)


def test_checker_accepts_a_faithful_copy() -> None:
    [marker] = find_markers(_fake_copy(), "fake.py")
    assert marker.replacements == [("Aksis", "Fake")]
    assert copy_mismatch(marker) is None


def test_checker_catches_a_modified_copy() -> None:
    [marker] = find_markers(_fake_copy(("self.head_dim**-0.5", "self.head_dim**-0.25")), "fake.py")
    mismatch = copy_mismatch(marker)
    assert mismatch is not None
    assert "-0.25" in mismatch


def test_checker_needs_the_stated_replacement() -> None:
    [marker] = find_markers(_fake_copy().replace(" with Aksis->Fake", ""), "fake.py")
    assert copy_mismatch(marker) is not None


def test_checker_rejects_a_marker_not_above_a_definition() -> None:
    source = "# Copied from lmforge.models.aksis.modeling_aksis.AksisMLP\n\nx = 1\n"
    with pytest.raises(ValueError, match="right above a def, a class or an assignment"):
        find_markers(source, "fake.py")


def test_checker_rejects_an_unknown_source() -> None:
    with pytest.raises(LookupError):
        source_of("lmforge.models.aksis.modeling_aksis.NoSuchClass")
