"""Every relative link in the repository's Markdown resolves inside a fresh clone.

A link must point at a file or folder that exists **inside the repository** (a fresh clone has
nothing beside it, so a link into a sibling folder is broken even on a machine where it exists),
and a ``#fragment`` into a Markdown file must name one of its headings (GitHub's anchor rules)
or an explicit ``<a id="...">``. Links to other sites (``https:``, ``mailto:``) are not followed:
no network. Fenced code blocks and inline code are not links.

Also a script: ``python qfs_assets_tests/test_docs_links.py`` prints every broken link and
exits 1 if there is one.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]

#: Generated or third-party folders (relative to the root) whose Markdown is not ours.
EXCLUDED = {"bench/results", "demo_deployment", "build", "logs"}
#: Only this file of the evidence root is in the repository; the rest is generated.
EVIDENCE_ROOT = "evidence_store"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.I)
_HTML_ANCHOR = re.compile(r"""<a\b[^>]*?\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """Every ``*.md`` of the repository: hidden folders (``.venv``, ``.git``), caches, generated
    folders and the generated part of the evidence root left out."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and d not in ("__pycache__", "node_modules") and not d.endswith(".egg-info")
            and f"{rel}/{d}".lstrip("/") not in EXCLUDED and rel != EVIDENCE_ROOT
        )
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".md"))
    return out


def _prose_lines(text: str, blank_code: bool = True) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code blanked out unless
    ``blank_code`` is false (headings keep the text of their code spans)."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
                fence = None
            continue
        lines.append((number, _INLINE_CODE.sub(lambda c: " " * len(c.group(0)), line) if blank_code else line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link, image, reference definition and HTML href/src."""
    found: list[tuple[int, str]] = []
    for number, line in _prose_lines(text):
        targets = [m.group(1) for m in _INLINE_LINK.finditer(line)]
        targets += [m.group(1) for m in _HTML_LINK.finditer(line)]
        ref = _REF_DEF.match(line)
        if ref:
            targets.append(ref.group(1))
        found.extend((number, t[1:-1] if t.startswith("<") and t.endswith(">") else t) for t in targets)
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in " -_" or cat[0] in "LNM":
            kept.append("-" if ch == " " else ch)
    return "".join(kept)


def anchors(text: str) -> set[str]:
    """Every fragment that lands somewhere in a Markdown file (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose_lines(text, blank_code=False):
        out.update(a.lower() for a in _HTML_ANCHOR.findall(line))
        m = _ATX.match(line)
        if not m:
            continue
        base = slug(m.group(2).strip())
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(root: Path = ROOT, files: list[Path] | None = None) -> list[str]:
    """One line per broken relative link: ``file:line: target: why``."""
    root = root.resolve()
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}

    def anchors_of(path: Path) -> set[str]:
        if path not in cache:
            cache[path] = anchors(path.read_text(encoding="utf-8"))
        return cache[path]

    for md in files if files is not None else markdown_files(root):
        md = md.resolve()
        where = md.relative_to(root).as_posix()
        for number, target in links(md.read_text(encoding="utf-8")):
            if not target or _SCHEME.match(target) or target.startswith("//"):
                continue  # another site: not followed
            path_part, _, fragment = target.partition("#")
            path_part = unquote(path_part.split("?", 1)[0])
            if not path_part:
                dest = md
            elif path_part.startswith("/"):
                dest = (root / path_part.lstrip("/")).resolve()
            else:
                dest = (md.parent / path_part).resolve()
            if dest != root and root not in dest.parents:
                problems.append(f"{where}:{number}: {target}: outside the repository")
                continue
            if not dest.exists():
                problems.append(f"{where}:{number}: {target}: no such file")
                continue
            if fragment and dest.is_file() and dest.suffix == ".md":
                if unquote(fragment).lower() not in anchors_of(dest):
                    problems.append(f"{where}:{number}: {target}: no heading or anchor #{fragment} in {dest.relative_to(root).as_posix()}")
    return problems


# -- tests -------------------------------------------------------------------------------------------

def test_every_relative_link_in_the_repository_resolves():
    files = markdown_files()
    rel = {f.relative_to(ROOT).as_posix() for f in files}
    # the documents people start from are all covered
    assert {"README.md", "docs/architecture.md", "docs/formats/export.md", "docs/formats/evidence.md",
            "evidence_store/README.md"} <= rel
    assert not any(r.startswith((".venv/", "bench/results/")) for r in rel)
    problems = broken_links()
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_nothing_points_outside_the_clone_to_the_shared_folder():
    needles = ("../" + "shared/", "shared" + "/contract")  # in pieces so that this file does not match itself
    hits = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("__pycache__", "node_modules")
                       and Path(dirpath, d).relative_to(ROOT).as_posix() not in EXCLUDED
                       and Path(dirpath).relative_to(ROOT).as_posix() != EVIDENCE_ROOT]
        for f in filenames:
            if f.endswith((".md", ".py", ".toml", ".yaml", ".yml", ".sh", ".cfg", ".txt", ".html", ".j2")):
                path = Path(dirpath, f)
                for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                    if any(n in line for n in needles):
                        hits.append(f"{path.relative_to(ROOT).as_posix()}:{number}: {line.strip()}")
    assert not hits, "a fresh clone has no shared folder; link docs/formats/ instead:\n" + "\n".join(hits)


def test_the_checker_finds_each_kind_of_broken_link(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "sibling").mkdir()  # exists beside the repository, as a sibling folder did here
    (tmp_path / "sibling" / "notes.md").write_text("# Notes\n")
    (repo / "docs" / "target.md").write_text(
        "# Target\n\n## The `storage_errors` table (v1.1)\n\n## Repeated\n\n## Repeated\n\n"
        '<a id="explicit-one"></a>\n\n```\n# not-a-heading\n```\n'
    )
    (repo / "docs" / "sub" / "page.md").write_text("text\n")
    (repo / "README.md").write_text(
        "[ok](docs/target.md) [ok dir](docs/sub/) [ok anchor](docs/target.md#the-storage_errors-table-v11)\n"
        "[ok dup](docs/target.md#repeated-1) [ok explicit](docs/target.md#explicit-one) [ok self](#readme)\n"
        "[web](https://example.invalid/x) [mail](mailto:someone@example.invalid) ![img](docs/sub/page.md)\n"
        "[ok title](docs/sub/page.md \"a title\") [ok root-relative](/docs/target.md)\n"
        "`[code span](missing-in-code.md)`\n"
        "```\n[fenced](missing-in-fence.md)\n```\n"
        "# Readme\n"
        "[missing](docs/nope.md)\n"
        "[outside](../sibling/notes.md)\n"
        "[bad anchor](docs/target.md#not-a-heading)\n"
        "[bad self anchor](#nowhere)\n"
        "[ref]: docs/also-missing.md\n"
        '<a href="docs/html-missing.md">x</a>\n'
    )
    problems = broken_links(repo)
    assert [p.split(": ", 1)[0] for p in problems] == [
        "README.md:10", "README.md:11", "README.md:12", "README.md:13", "README.md:14", "README.md:15"], problems
    assert "outside the repository" in problems[1]
    assert "#not-a-heading" in problems[2]
    assert {p.rsplit(": ", 1)[0].split(": ", 1)[1] for p in problems} == {
        "docs/nope.md", "../sibling/notes.md", "docs/target.md#not-a-heading", "#nowhere",
        "docs/also-missing.md", "docs/html-missing.md"}


def test_markdown_files_skip_hidden_generated_and_evidence_folders(tmp_path):
    for rel in ("README.md", "docs/a.md", ".venv/lib/x.md", "bench/results/r.md", "bench/README.md",
                "evidence_store/README.md", "evidence_store/dashboard/x.md", "pkg.egg-info/y.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    got = sorted(p.relative_to(tmp_path).as_posix() for p in markdown_files(tmp_path))
    assert got == ["README.md", "bench/README.md", "docs/a.md", "evidence_store/README.md"]


if __name__ == "__main__":
    broken = broken_links()
    print("\n".join(broken) or f"{len(markdown_files())} Markdown files, every relative link resolves")
    sys.exit(1 if broken else 0)
