"""benchmarks/dmc_suite.py: the DreamerV3 anchors, the score-at-budget rule and the comparison table."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_suite():
    spec = importlib.util.spec_from_file_location("dmc_suite", REPO / "benchmarks" / "dmc_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_anchors_hold_the_official_per_task_figures():
    anchors = load_suite().load_anchors()
    assert anchors["budgets"] == [50000, 100000, 250000, 500000] and anchors["window"] == 25000
    assert len(anchors["tasks"]) == 18
    assert anchors["tasks"]["cartpole_swingup"][50000] == (341.0, 12.0)
    assert anchors["tasks"]["walker_walk"][500000] == (925.0, 34.0)
    assert anchors["tasks"]["reacher_easy"][100000] == (770.0, 136.0)
    assert "dmc_proprio-dreamerv3" in anchors["source"]


def test_score_at_a_budget_averages_the_evaluations_in_the_window():
    suite = load_suite()
    curve = [(10000, 100.0), (20000, 200.0), (30000, 300.0), (50000, 500.0), (80000, 800.0)]
    assert suite.score_at(curve, 50000, 25000) == pytest.approx((300.0 + 500.0) / 2)
    assert suite.score_at(curve, 100000, 25000) == pytest.approx(800.0)
    assert suite.score_at(curve, 250000, 25000) is None


def test_table_compares_only_budgets_the_runs_reached():
    suite = load_suite()
    anchors = suite.load_anchors()
    curves = {
        "cartpole_swingup": {"seed0": [(40000, 330.0), (50000, 352.0)], "seed1": [(40000, 300.0), (50000, 310.0)]},
        "walker_walk": {"seed0": [(30000, 100.0)]},  # never reached 50k: no row
    }
    rows = suite.compare(curves, anchors)
    assert [(r["task"], r["env_steps"]) for r in rows] == [("cartpole_swingup", 50000)]
    row = rows[0]
    assert row["ours"] == pytest.approx((341.0 + 305.0) / 2) and row["seeds"] == 2
    assert row["ours_std"] == pytest.approx(18.0)
    assert row["diff"] == pytest.approx(323.0 - 341.0) and row["z"] == pytest.approx(-18.0 / 12.0)
    assert row["within_band"] is False
    table = suite.markdown_table(rows)
    assert "| cartpole_swingup | 50k | 323 ± 18 (2) | 341 ± 12 | -18 (-1.5 std) | no |" in table


def test_report_reads_runs_at_simulator_steps_and_writes_its_files(tmp_path):
    suite = load_suite()
    run = tmp_path / "cartpole_swingup" / "seed0"
    run.mkdir(parents=True)
    (run / "suite_run.json").write_text(json.dumps({"action_repeat": 2}))
    lines = [{"kind": "train", "step": 10000}, {"kind": "eval", "step": 20000, "return": 330.0},
             {"kind": "eval", "step": 25000, "return": 350.0}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"kind\": \"ev")
    (tmp_path / "random.json").write_text(json.dumps({"cartpole_swingup": [89.0, 55.0]}))  # cached: no env run
    rows = suite.report(tmp_path)
    curves = {"cartpole_swingup": {"seed0": [[40000.0, 330.0], [50000.0, 350.0]]}}
    assert json.loads((tmp_path / "curves.json").read_text()) == curves
    assert rows[0]["ours"] == pytest.approx(340.0) and rows[0]["within_band"]
    assert (rows[0]["random"], rows[0]["random_std"]) == (89.0, 55.0)
    assert (tmp_path / "curves.png").stat().st_size > 0
    row = "| cartpole_swingup | 50k | 340 ± 0 (1) | 341 ± 12 | -1 (-0.1 std) | yes | 89 ± 55 |"
    assert row in (tmp_path / "table.md").read_text()


def test_random_policy_score_is_computed_once_and_cached(tmp_path):
    suite = load_suite()
    scores = suite.random_scores(tmp_path, ["cartpole_swingup"], episodes=1)
    mean, std = scores["cartpole_swingup"]
    assert 0.0 <= mean <= 1000.0 and std == 0.0  # one episode of 1000 sim steps, rewards in [0, 1]
    assert json.loads((tmp_path / "random.json").read_text()) == {"cartpole_swingup": [mean, std]}
    assert suite.random_score("cartpole_swingup", episodes=1) == (mean, std)  # seeded: the same episode again
    # a row without a cached score says so instead of inventing one
    rows = suite.compare({"walker_walk": {"seed0": [(50000, 100.0)]}}, suite.load_anchors(), scores)
    assert rows[0]["random"] is None and suite.markdown_table(rows).rstrip().endswith("| no | – |")
