"""Files a user reads speak to the user: nothing that only makes sense on the machines pss is developed on.

Checked in every tracked file under README.md, docs/, configs/, benchmarks/ (records included), src/ and
examples/: paths outside the repository or absolute paths of a particular machine, notes about the limits
of the machines the project was developed on, and numbers of the project's internal issue tracker.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from conftest import ROOT

USER_PATHS = ("README.md", "docs", "configs", "benchmarks", "src", "examples")

FORBIDDEN = {
    "a path outside the repository": re.compile(r"\.\./shared|(?<![\w.~])/(?:work|home|root|tmp|scratch|mnt)/"),
    "an internal issue number": re.compile(r"\b[Ii]ssues? #?\d+|\bissue-\d+|#\d+'s schema"),
    "a note about our own machines": re.compile(
        r"lent (?:GPU )?machine|minutes of device time|device time per session|shared \d-core|this shared machine|carry: \[|\$OUT\b"),
}


def _user_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", *USER_PATHS], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (e.g. an unpacked sdist): every file under the paths
        return [str(p.relative_to(ROOT)) for d in USER_PATHS for p in (ROOT / d).rglob("*") if p.is_file()]
    return out.stdout.split()


def test_the_pattern_catches_what_it_should():
    text = ("see ../shared/data/x.tar.gz, /work/main/configs/a.yaml, --workdir /tmp/pf, issue 12, issue-22, "
            "10 minutes on a lent GPU machine, 30 minutes of device time per session")
    found = {why for why, pat in FORBIDDEN.items() if pat.search(text)}
    assert found == set(FORBIDDEN)
    fine = "~/.cache/pss-data/cifar10, path/to/cifar10-jpg.tar.gz, runs/demo, https://arxiv.org/abs/2208.09520"
    assert not any(pat.search(fine) for pat in FORBIDDEN.values())


@pytest.mark.parametrize("why", sorted(FORBIDDEN))
def test_user_files_hold_no_workspace_talk(why):
    files = _user_files()
    assert len(files) > 20, files  # the listing worked
    pat = FORBIDDEN[why]
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix in (".png", ".jpg", ".pt", ".safetensors", ".gz"):
            continue
        try:
            lines = path.read_text().splitlines()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        hits += [f"{name}:{i}: {line.strip()[:120]}" for i, line in enumerate(lines, 1) if pat.search(line)]
    assert not hits, f"{why} in files users read:\n" + "\n".join(hits)


def test_results_page_is_generated_from_the_records():
    """benchmarks/results/README.md is what benchmarks/results_page.py makes of the records: never edited by hand."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_page", ROOT / "benchmarks" / "results_page.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    results = ROOT / "benchmarks" / "results"
    assert (results / "README.md").read_text() == page.render(results), (
        "benchmarks/results/README.md is stale: run python benchmarks/results_page.py")
    assert "recipe_study_cpu-study_2026-11-24.json" in page.render(results)


def test_install_lines_install_this_clone():
    """`pss` on the package index is another project: every install line installs this clone's extras
    (`pip install -e ".[hf]"`), never `pip install "pss[hf]"`."""
    pat = re.compile(r"""pip install \\?["']?pss\[""")
    assert pat.search('pip install "pss[hf]"') and pat.search("pip install pss[lightning]")
    assert not pat.search('pip install -e ".[hf]"')
    hits = []
    for name in _user_files():
        path = ROOT / name
        if path.suffix not in (".md", ".py", ".yaml", ".toml", ".txt", ""):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        hits += [f"{name}:{i}" for i, line in enumerate(text.splitlines(), 1) if pat.search(line)]
    assert not hits, "install lines naming the package index's pss: " + ", ".join(hits)


# A pointer to a section: (README, "Use it in your own loop") or (docs/findings.md, "Which recipe").
SECTION_POINTER = re.compile(r'\((README|docs/[\w-]+\.md), "([^"]+)"\)')


def test_section_pointers_name_a_section_of_that_file():
    """Recipe headers, comments and docstrings that send the reader to a section name one that is there
    (a section that moved to another file leaves its pointers stale)."""
    pointers, stale = 0, []
    for name in _user_files():
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".yaml", ".yml"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for target, section in SECTION_POINTER.findall(line):
                pointers += 1
                doc = ROOT / ("README.md" if target == "README" else target)
                headings = [h.lstrip("#").strip() for h in doc.read_text().splitlines() if h.startswith("#")] \
                    if doc.is_file() else []
                if not any(h.startswith(section) for h in headings):
                    stale.append(f"{name}:{i}: ({target}, {section!r})")
    assert pointers >= 5  # the pattern finds the recipes' pointers
    assert not stale, "pointers to sections that are not there:\n" + "\n".join(stale)
