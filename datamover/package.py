"""The zipapp that travels in cloud-init user data: the package's own sources, deterministic bytes.

Comments and docstrings are stripped token by token (no reformatting, so code that runs here runs
the same on the VSI's Python 3.10): user data is limited to 64 KiB.
"""

import ast
import functools
import io
import itertools
import os
import tokenize
import zipfile
from typing import Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
# not needed in the zipapp: the builder itself, and `python -m datamover` (the zipapp has its own)
_LEFT_OUT = {"package.py", "__main__.py"}
_MAIN = "import sys\nfrom datamover.cli import main\nsys.exit(main())\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)


# built once per process (about 0.1-0.2 s each): a run ships it to every host and storage job it starts
@functools.lru_cache(maxsize=None)
def build_zipapp(mode: Optional[str] = None) -> bytes:
    """`python3 mover.pyz MODE ...`: entry point the CLI, same bytes for the same sources. Without
    `mode`, the whole package (storage servers and emulator hosts, reached over SSH); with a mode
    (vsi, export, lookup), only the CLI and the modules that mode's run imports: user data has 64 KiB."""
    # a host or server may run Python 3.8, which cannot evaluate annotations such as dict[str, int]
    prefix = "from __future__ import annotations\n"
    names = sorted(n for n in os.listdir(_HERE) if n.endswith(".py") and n not in _LEFT_OUT)
    if mode is not None:
        # __init__ too: Python 3.8's zipimport finds no package without one
        names = [n for n in names if n[:-3] in _imported({"cli", "__init__", mode})]
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "a") as archive:
        _add(archive, "__main__.py", _MAIN)
        for name in names:
            with open(os.path.join(_HERE, name), encoding="utf-8") as handle:
                _add(archive, f"datamover/{name}", prefix + minify(handle.read(), name))
    return buffer.getvalue()


def _imported(start: set) -> set:
    """The package's modules that `start` imports at module level, transitively."""
    seen: set = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        with open(os.path.join(_HERE, f"{module}.py"), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "datamover":
                todo += [a.name for a in node.names if os.path.exists(os.path.join(_HERE, f"{a.name}.py"))]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("datamover."):
                todo.append(node.module.split(".")[1])
    return seen


def _add(archive: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, text.encode(), compresslevel=9)


def _shallow(line: str, opening: bool) -> str:
    """One space per level of indentation instead of four (continuation lines may have any)."""
    body = line.lstrip(" ")
    return " " * ((len(line) - len(body)) // 4) + (body if opening else body.rstrip() + "\n")


def minify(source: str, name: str = "<source>") -> str:
    """The source without comments, docstrings (each becomes `...`), blank lines and most of its
    indentation."""
    lines = source.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    keep: set[int] = set()  # lines that begin inside a multi-line string: their text is data
    opening: set[int] = set()  # lines where a multi-line string begins: no trailing strip
    edits: list[tuple[int, int, int, int, str]] = []  # (row, col, end row, end col, replacement)
    previous = None
    significant = [t for t in tokens if t.type not in (tokenize.NL, tokenize.COMMENT)]
    following = {id(a): b for a, b in itertools.pairwise(significant)}
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            edits.append((tok.start[0], tok.start[1], tok.end[0], tok.end[1], ""))
        elif tok.type == tokenize.STRING:
            after = following.get(id(tok))
            docstring = (previous is None or previous.type == tokenize.INDENT) and (
                after is None or after.type == tokenize.NEWLINE
            )
            if docstring:
                edits.append((tok.start[0], tok.start[1], tok.end[0], tok.end[1], "..."))
            elif tok.start[0] != tok.end[0]:
                opening.add(tok.start[0])
                keep.update(range(tok.start[0] + 1, tok.end[0] + 1))
        if tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING):
            previous = tok
    for row, col, end_row, end_col, text in reversed(edits):  # from the end: positions stay valid
        lines[row - 1] = lines[row - 1][:col] + text + lines[end_row - 1][end_col:]
        del lines[row:end_row]
    out = [
        line if i + 1 in keep else _shallow(line, i + 1 in opening)
        for i, line in enumerate(lines)
        if line.strip() or i + 1 in keep
    ]
    result = "".join(out)
    compile(result, name, "exec")  # a stripping mistake must never reach a VSI
    return result
