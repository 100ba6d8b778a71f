"""One record path: every benchmark writes its record through `pss.study.write_record`, the studies share
their set-ups through `pss.study` (not through each other), and the results page reads the records only."""
from __future__ import annotations

import ast
import importlib.util
import json

import pytest

from conftest import ROOT

from pss import study
from pss.errors import ConfigError

BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
STUDY_SCRIPTS = ("recipe_study", "budget_study", "token_study")


def _page():
    spec = importlib.util.spec_from_file_location("results_page", BENCHMARKS / "results_page.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    return page


def _scripts() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(BENCHMARKS.glob("*.py"))}


def _imported(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_every_record_is_written_by_write_record():
    """No script writes a record's JSON or Markdown itself: a `write_text` of `json.dumps(...)` or of a path's
    .md is what `write_record` alone does; and every script that records calls it."""
    offenders = []
    for name, tree in _scripts().items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "write_text"):
                continue
            target, text = ast.unparse(node.func.value), ast.unparse(node)
            if "json.dumps(rec" in text or "json.dumps(record" in text or '".md"' in target.replace("'", '"'):
                offenders.append(f"{name}: {text[:100]}")
    assert not offenders, "records written around pss.study.write_record:\n" + "\n".join(offenders)
    # every script under benchmarks/ but the page records something: each calls write_record
    calls = {name: {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
             for name, tree in _scripts().items() if name != "results_page"}
    assert len(calls) >= 12, sorted(calls)
    missing = sorted(n for n, c in calls.items() if not c & {"write_record", "study.write_record"})
    assert not missing, f"these scripts record without pss.study.write_record: {missing}"


def test_no_study_imports_another_for_its_set_up():
    """The studies' shared set-ups live in pss.study: no script imports a study script."""
    hits = {name: sorted(_imported(tree) & set(STUDY_SCRIPTS)) for name, tree in _scripts().items()}
    assert not {n: h for n, h in hits.items() if h}


def test_the_results_page_reads_records_and_imports_no_script():
    """The page needs nothing but the standard library: no benchmark script, no pss (no importlib either)."""
    tree = ast.parse((BENCHMARKS / "results_page.py").read_text())
    assert _imported(tree) <= {"__future__", "argparse", "json", "pathlib"}, _imported(tree)
    page = _page().render(RESULTS)
    for md in sorted(RESULTS.glob("*.md")):
        if md.name == "README.md" or not md.with_suffix(".json").exists():
            continue
        kind = json.loads(md.with_suffix(".json").read_text()).get("kind")
        if kind in ("e2e", "speed", "recipe_study", "budget_study", "token_study", "dial_vs_merge"):
            # every line of the record but its headings, exactly as written
            body = [line for line in md.read_text().splitlines() if line.strip() and not line.startswith("#")]
            assert all(line in page for line in body), md.name


def test_a_record_without_its_markdown_is_refused(tmp_path):
    (tmp_path / "speed_x.json").write_text(json.dumps({"kind": "speed", "date": "2026-01-01"}))
    with pytest.raises(SystemExit, match="speed_x.json has no speed_x.md beside it: write records with pss.study.write_record"):
        _page().render(tmp_path)


def test_write_record_writes_both_files_the_same_from_text_or_lines(tmp_path):
    rec = {"kind": "speed", "date": "2026-01-01", "x": [1.5]}
    a = study.write_record(tmp_path / "a" / "r.json", rec, "# title\n\n| a |\n")
    b = study.write_record(tmp_path / "b" / "r.json", rec, ["# title", "", "| a |"])
    assert json.loads(a.read_text()) == rec
    assert a.with_suffix(".md").read_text() == b.with_suffix(".md").read_text() == "# title\n\n| a |\n"
    page = _page().render(tmp_path / "a")
    assert "**title**" in page and "| a |" in page and "[r](r.json)" in page


def test_the_shared_set_ups_are_the_ones_the_committed_records_ran():
    """A run's overrides are how a study recognises it in a committed record: the set-ups in pss.study must be,
    value for value, the ones the recipe, budget and token studies recorded."""
    recipe = json.loads((RESULTS / "recipe_study_cpu-study_2026-11-24.json").read_text())
    assert recipe["recipe"] == study.STUDY_RECIPE
    assert recipe["overrides"][:-1] == study.STUDY_CPU  # then the arm's model kwargs
    budget = json.loads((RESULTS / "budget_study_cpu_2026-12-02.json").read_text())
    assert budget["overrides"] == study.STUDY_CPU_ROPE
    tokens = json.loads(sorted(RESULTS.glob("token_study_cpu_*.json"))[-1].read_text())
    assert tokens["scales"]["t64"] == study.STUDY_CPU_ROPE
    rows = {(r["name"], r["seed"]): r["overrides"] for r in budget["runs"]}
    horizon = [*study.STUDY_CPU_ROPE, "epochs=15"]
    for arm in ("full", "fixed", "tokens_for_epochs"):
        budget_of_arm = 1.0 if arm == "full" else 0.6
        assert rows[(f"h15_{arm}", 0)] == [*horizon, *study.study_arm(arm, budget_of_arm), "seed=0"], arm
    recorded = study.recorded_summaries(RESULTS, ("budget_study_*.json",))
    key = ("h15_tokens_for_epochs", 0, tuple(rows[("h15_tokens_for_epochs", 0)]))
    assert recorded[key]["final_acc1"] == next(r["final_acc1"] for r in budget["runs"]
                                               if r["name"] == "h15_tokens_for_epochs" and r["seed"] == 0)
    with pytest.raises(ConfigError, match="unknown arm 'nope'"):
        study.study_arm("nope", 0.6)


def test_per_seed_prints_the_mean_then_each_seed():
    assert study.per_seed([0.5, 1.7, 2.3]) == "+1.50 (+0.5 / +1.7 / +2.3)"
    assert study.per_seed(None) == "-" and study.per_seed([]) == "-"


def test_an_unreadable_record_is_one_line(tmp_path):
    (tmp_path / "budget_study_cpu_2026-01-01.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable .*restore it from version control"):
        study.recorded_summaries(tmp_path, ("budget_study_*.json",))
