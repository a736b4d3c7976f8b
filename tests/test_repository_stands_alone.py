"""The repository stands alone: no pointer leaves it, and every pointer into docs/ lands.

Code, tests and pages cite the wire contract as ``docs/protocol.md §N`` and the
robustness checklist as ``docs/robustness.md item N``; a clone without the
project brief must resolve every one of them.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Names of documents that live outside the repository; none may be cited.  Spelled in
#: pieces so that this file, tracked like any other, does not cite them itself.
FORBIDDEN = ["PROTOCOL" + ".md", "RELIABILITY" + ".md", ".." + "/shared", "shared" + "/PROTOCOL"]
OUTSIDE = re.compile("|".join(re.escape(name) for name in FORBIDDEN))
#: "docs/protocol.md §1.3", "`docs/protocol.md` §1.3, §5 and §9".
SECTION_REF = re.compile(r"docs/([\w-]+)\.md`? ((?:§\d+(?:\.\d+)*)(?:(?:, | and )§\d+(?:\.\d+)*)*)")
#: "docs/robustness.md item 69", "docs/robustness.md items 1, 17, 35 and 36-42".
ITEM_REF = re.compile(r"docs/robustness\.md`? items? (\d+(?:-\d+)?(?:(?:, | and )\d+(?:-\d+)?)*)")
#: "docs/robustness.md group H", "docs/robustness.md groups B, C, G and H".
GROUP_REF = re.compile(r"docs/robustness\.md`? groups? ([A-J](?:(?:, | and )[A-J])*)")
SKIPPED_SUFFIXES = (".png", ".jpg", ".ico", ".gif", ".woff", ".woff2", ".pdf", ".gz", ".zip")


@cache
def tracked_text_files() -> list[Path]:
    """Files git tracks, minus dependencies, lock files and anything binary."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if (
            not name
            or "node_modules/" in name
            or name.endswith((".lock", "-lock.json", "lock.yaml"))
            or name.endswith(SKIPPED_SUFFIXES)
            or not path.is_file()
        ):
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        files.append(path)
    return files


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def section_markers(page: Path) -> set[str]:
    """The ``§N`` numbers that head a section of ``page`` (``## §1.3 Long polling``)."""
    found = re.findall(r"^#+ §(\d+(?:\.\d+)*) ", read(page), flags=re.MULTILINE)
    return set(found)


def checklist() -> tuple[set[int], set[str]]:
    """Item numbers and group letters defined in robustness.md's checklist section."""
    text = read(ROOT / "docs" / "robustness.md")
    start = text.index("\n## The checklist\n")
    end = text.index("\n## ", start + 1)
    part = text[start:end]
    items = {int(n) for n in re.findall(r"^\| (\d+) \|", part, flags=re.MULTILINE)}
    groups = set(re.findall(r"^### ([A-J])\. ", part, flags=re.MULTILINE))
    return items, groups


def numbers(spec: str) -> list[int]:
    out: list[int] = []
    for piece in re.split(r", | and ", spec):
        low, _, high = piece.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def where(path: Path, text: str, pos: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}"


def test_the_scan_sees_code_tests_docs_and_browser_files() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in tracked_text_files()}
    for expected in ("docs/protocol.md", "src/bullet_py/router.py", "js/bullet.js", "README.md"):
        assert expected in names
    assert not any("node_modules/" in n for n in names)


def test_no_file_points_outside_the_repository() -> None:
    hits = []
    for path in tracked_text_files():
        text = read(path)
        hits += [f"{where(path, text, m.start())}: {m.group()}" for m in OUTSIDE.finditer(text)]
    assert hits == []


def test_the_outside_pattern_catches_what_it_must() -> None:
    for name in FORBIDDEN:
        assert OUTSIDE.search(f"see {name} §1")
    assert not OUTSIDE.search("docs/protocol.md §1")


def test_every_section_reference_lands_on_a_section() -> None:
    cited = 0
    broken = []
    for path in tracked_text_files():
        text = read(path)
        for m in SECTION_REF.finditer(text):
            page = ROOT / "docs" / f"{m.group(1)}.md"
            have = section_markers(page) if page.is_file() else set()
            for number in re.findall(r"§(\d+(?:\.\d+)*)", m.group(2)):
                cited += 1
                if number not in have:
                    broken.append(f"{where(path, text, m.start())}: {m.group(1)}.md §{number}")
    assert broken == []
    assert cited > 20  # the references exist, so the regex is really matching them


def test_every_checklist_reference_lands_on_an_item() -> None:
    items, groups = checklist()
    assert items == set(range(1, 85))
    assert groups == set("ABCDEFGHIJ")
    cited = 0
    broken = []
    for path in tracked_text_files():
        text = read(path)
        for m in ITEM_REF.finditer(text):
            for n in numbers(m.group(1)):
                cited += 1
                if n not in items:
                    broken.append(f"{where(path, text, m.start())}: item {n}")
        for m in GROUP_REF.finditer(text):
            for letter in re.findall(r"[A-J]", m.group(1)):
                cited += 1
                if letter not in groups:
                    broken.append(f"{where(path, text, m.start())}: group {letter}")
    assert broken == []
    assert cited > 20


def test_the_reference_patterns_read_lists_and_ranges() -> None:
    m = SECTION_REF.search("(`docs/protocol.md` §1.3, §1.4 and §5)")
    assert m is not None and m.group(1) == "protocol"
    assert re.findall(r"§(\d+(?:\.\d+)*)", m.group(2)) == ["1.3", "1.4", "5"]
    m = ITEM_REF.search("docs/robustness.md items 1, 17, 35 and 36-38.")
    assert m is not None and numbers(m.group(1)) == [1, 17, 35, 36, 37, 38]
