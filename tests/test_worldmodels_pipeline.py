"""World Models' stages end to end on CarRacing at a tiny budget: every stage writes what the next reads,
`daydream train` (agent: worldmodels) resumes at the stage it was in, the evaluation runs the exported
ONNX policy beside a random one, and the torch policy scores the same on the same tracks."""

from __future__ import annotations

import json

import pytest

from daydream.cli import main
from daydream.config import load_config
from daydream.worldmodels.pipeline import STAGES, WorldModelsRun

TINY = ["worldmodels.rollouts=2", "worldmodels.rollout_steps=12", "worldmodels.eval_steps=8",
        "worldmodels.vae_batch=8", "worldmodels.rnn_hidden=16", "worldmodels.mixtures=2", "worldmodels.rnn_batch=2",
        "worldmodels.rnn_epochs=2", "worldmodels.rnn_seq_len=6", "worldmodels.population=4",
        "worldmodels.candidate_rollouts=1", "worldmodels.generations=2", "worldmodels.eval_tracks=2",
        "worldmodels.random_tracks=1"]

pytestmark = pytest.mark.slow


def test_stages_run_in_order_resume_and_report(tmp_path, capsys):
    config = load_config("worldmodels_carracing", [f"logdir={tmp_path}", *TINY])
    run = WorldModelsRun(config, progress=False)
    with pytest.raises(FileNotFoundError, match="run the `collect` stage first"):
        run.run("train-vae")
    run.run("collect")
    run.run("train-vae")
    assert run.done_stages == ["collect", "train-vae"]
    # `all` continues from there: the rollouts are not collected again
    mtimes = [p.stat().st_mtime_ns for p in run.rollout_files()]
    overrides = [f"logdir={tmp_path}", *TINY, "worldmodels.train_in_dream=true"]
    args = ["train", "--config", "worldmodels_carracing"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in run.rollout_files()] == mtimes
    assert run.done_stages == list(STAGES)
    assert (run.directory / "policy.onnx").stat().st_size > 0
    result = json.loads((run.directory / "eval.json").read_text())
    assert result["tracks"] == 2 and len(result["returns"]) == 2 and result["trained_in_dream"]
    assert result["runtime"] == "onnx" and result["random_tracks"] == 1 and len(result["random_returns"]) == 1
    assert "mean return" in capsys.readouterr().out
    # the torch policy on the same tracks: the same returns as the exported graph's
    eval_args = ["worldmodels", "eval", "--runtime", "torch", *args[1:]]
    assert main(eval_args) == 0
    torch_result = json.loads((run.directory / "eval.json").read_text())
    assert torch_result["runtime"] == "torch"
    assert torch_result["returns"] == pytest.approx(result["returns"], abs=1e-3)
    with pytest.raises(ValueError, match="unknown World Models stage"):
        run.run("dream")
    # the paper's table: C trained in the dream at each tau, its virtual and actual scores
    table_args = ["worldmodels", "dream-table", *args[1:], "--set", "worldmodels.dream_temperatures=[0.5,1.5]"]
    assert main(table_args) == 0
    rows = json.loads((run.directory / "dream_table.json").read_text())
    assert [r["temperature"] for r in rows] == [0.5, 1.5]
    assert all(r["tracks"] == 2 and len(r["history"]) == 2 for r in rows)
    assert "tau 1.5: virtual" in capsys.readouterr().out
