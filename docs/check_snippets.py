#!/usr/bin/env python3
"""Checks that every cpp/sh/cmake/meson code block of the given Markdown files is copied from
a source file of the project (examples/, include/, benchmarks/, tests/consumers/), so that
the docs never show code that does not build. A block's lines (blank lines and surrounding spaces ignored) must
appear consecutively in one file; a line that is just `...` or `// ...` separates pieces
that must appear in that order in the same file."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
sources = {}
for d in ("examples", "include", "benchmarks", "tests/consumers"):
    for f in (root / d).rglob("*"):
        if (f.suffix in (".cpp", ".hpp", ".sh", ".build") or f.name == "CMakeLists.txt" or f.suffix == ".cmake") and f.is_file():
            sources[f.relative_to(root)] = [l.strip() for l in f.read_text().splitlines() if l.strip()]


def find(lines, piece, start):
    for i in range(start, len(lines) - len(piece) + 1):
        if lines[i:i + len(piece)] == piece:
            return i + len(piece)
    return -1


def found_in(lines, pieces):
    at = 0
    for piece in pieces:
        at = find(lines, piece, at)
        if at < 0:
            return False
    return True


failures = 0
for md in sys.argv[1:]:
    text = pathlib.Path(md).read_text()
    for m in re.finditer(r"^```(cpp|sh|cmake|meson)\n(.*?)^```", text, re.S | re.M):
        block_line = text[:m.start()].count("\n") + 1
        pieces, piece = [], []
        for l in m.group(2).splitlines():
            l = l.strip()
            if l in ("...", "// ..."):
                pieces.append(piece)
                piece = []
            elif l:
                piece.append(l)
        pieces = [p for p in pieces + [piece] if p]
        if not any(found_in(lines, pieces) for lines in sources.values()):
            failures += 1
            print(f"{md}:{block_line}: this {m.group(1)} block is not copied from any source file "
                  f"(examples/, include/, benchmarks/, tests/consumers/); first line: {pieces[0][0] if pieces else ''}")
print(f"{failures} block(s) not found" if failures else "every code block is copied from a source file")
sys.exit(1 if failures else 0)
