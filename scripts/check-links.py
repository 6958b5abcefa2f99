#!/usr/bin/env python3
"""Checks every internal link of the docs: the book (docs/src/**/*.md), README.md,
CONTRIBUTING.md, SECURITY.md and RELIABILITY.md.

- A relative link must name a file or folder that exists in the repository.
- A link with an #anchor into a Markdown file (or into the same file) must name one of that
  file's headings, with the ids mdBook and GitHub both give them (lower case, spaces to '-',
  punctuation dropped, '-1', '-2' ... for repeats).
- `{{#include PATH}}` in the book must name an existing file.
- Every page under docs/src is listed in docs/src/SUMMARY.md (otherwise the book hides it).

External links (http:, https:, mailto:) are not fetched. Links inside code (fenced blocks and
`inline code`) are not links. Standard library only. Exits 1 and lists every broken link.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP = ["README.md", "CONTRIBUTING.md", "SECURITY.md", "RELIABILITY.md"]
BOOK = ROOT / "docs" / "src"

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)")
INCLUDE = re.compile(r"\{\{#include\s+([^}\s:]+)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text):
    """(line number, line) outside fenced code blocks."""
    in_fence = None
    for n, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if m:
            if in_fence is None:
                in_fence = m.group(1)
            elif m.group(1) == in_fence:
                in_fence = None
            continue
        if in_fence is None:
            yield n, line


def slug(heading):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "")
    out = []
    for ch in text.strip():
        if ch.isalnum() or ch in "_-":
            out.append(ch.lower())
        elif ch.isspace():
            out.append("-")
    return "".join(out)


_anchors = {}


def anchors(path):
    if path not in _anchors:
        ids, seen = set(), {}
        for _, line in prose_lines(path.read_text(encoding="utf-8")):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            ids.add(base if n == 0 else f"{base}-{n}")
        _anchors[path] = ids
    return _anchors[path]


def check_file(path, problems):
    text = path.read_text(encoding="utf-8")
    count = 0
    for n, line in prose_lines(text):
        if path.is_relative_to(BOOK):
            for target in INCLUDE.findall(line):
                count += 1
                if not (path.parent / target).is_file():
                    problems.append(f"{path.relative_to(ROOT)}:{n}: include {target}: no such file")
        bare = INLINE_CODE.sub("", line)
        targets = [m.group(1).strip("<>") for m in LINK.finditer(bare)]
        m = REF_DEF.match(bare)
        if m:
            targets.append(m.group(1).strip("<>"))
        for target in targets:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            count += 1
            where = f"{path.relative_to(ROOT)}:{n}: {target}"
            file_part, _, anchor = target.partition("#")
            dest = path if not file_part else (path.parent / file_part).resolve()
            if not dest.exists():
                problems.append(f"{where}: no such file")
                continue
            try:
                dest.relative_to(ROOT)
            except ValueError:
                problems.append(f"{where}: points outside the repository")
                continue
            if anchor and dest.suffix == ".md":
                if anchor not in anchors(dest):
                    problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return count


def main():
    files = [ROOT / f for f in TOP if (ROOT / f).exists()]
    missing_top = [f for f in TOP if not (ROOT / f).exists()]
    files += sorted(BOOK.rglob("*.md"))
    problems = [f"{f}: missing" for f in missing_top]
    links = sum(check_file(f, problems) for f in files)

    summary = BOOK / "SUMMARY.md"
    listed = {
        (BOOK / t).resolve()
        for _, line in prose_lines(summary.read_text(encoding="utf-8"))
        for t in re.findall(r"\]\(([^)#]+)", line)
    }
    for page in sorted(BOOK.rglob("*.md")):
        if page != summary and page.resolve() not in listed:
            problems.append(f"{page.relative_to(ROOT)}: not listed in docs/src/SUMMARY.md")

    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check-links: {len(problems)} broken of {links} links in {len(files)} files", file=sys.stderr)
        return 1
    print(f"check-links: {links} internal links in {len(files)} files, all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
