"""`femb runs DIR`: the table, --json, --csv and the errors, over runs `femb train` really wrote.

Two tiny trainings (module-scoped); the other states (died, interrupted, nonfinite, running) are
copies of the first with their metrics.jsonl cut or edited the way those endings leave it.
"""

import io
import json
import shutil

import pandas as pd
import pytest
from cli_helpers import TINY_TRAIN, assert_one_line_error
from typer.testing import CliRunner

from femb.training.events import read_events
from femb.training.run_dir import RunDir, RunLock
from femb_cli.main import app

runner = CliRunner()


def _train(run_dir, *args):
    result = runner.invoke(app, ["train", *TINY_TRAIN, "--run-dir", str(run_dir), *map(str, args)])
    assert result.exit_code == 0, result.output


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def _copy_with_lines(source, target, lines):
    shutil.copytree(source, target)
    (target / "metrics.jsonl").write_text("".join(lines))


def _with_reason(line, reason):
    event = json.loads(line)
    event["reason"] = reason
    return json.dumps(event) + "\n"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """done: 4/4 evaluated at 2 and 4; short: 2/2 never evaluated (--eval-every 0); cut,
    interrupted, blown, noeval: copies of done (killed after step 3 mid-write, ended by Ctrl-C,
    ended by a NaN loss, its evaluations removed); notes: not a run."""
    root = tmp_path_factory.mktemp("runs")
    _train(root / "done", "--steps", 4, "--eval-every", 2)
    _train(root / "short", "--steps", 2, "--eval-every", 0)
    lines = _lines(root / "done" / "metrics.jsonl")
    kinds = [json.loads(line)["event"] for line in lines]
    assert kinds[-1] == "end"
    after_step_3 = next(i for i, line in enumerate(lines) if '"step": 4' in line and kinds[i] == "step")
    copies = {
        "cut": [*lines[:after_step_3], '{"event": "step", "ti'],
        "interrupted": [*lines[:-1], _with_reason(lines[-1], "interrupted")],
        "blown": [*lines[:-1], _with_reason(lines[-1], "nonfinite")],
        "noeval": [line for line in lines if '"event": "eval"' not in line],
    }
    for name, copy_lines in copies.items():
        _copy_with_lines(root / "done", root / name, copy_lines)
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not a run\n")
    return root


def _best_eval(run_dir, last_step=None):
    evals = [e for e in read_events(run_dir / "metrics.jsonl") if e["event"] == "eval"]
    evals = [e for e in evals if last_step is None or e["step"] <= last_step]
    best = max(e["accuracy"] for e in evals)
    return best, next(e["step"] for e in evals if e["accuracy"] == best)


def _json(root):
    result = runner.invoke(app, ["runs", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_table_lists_every_run_with_its_steps_best_accuracy_and_status(runs_root):
    result = runner.invoke(app, ["runs", str(runs_root)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.strip()}
    assert set(rows) == {"done", "short", "cut", "interrupted", "blown", "noeval"}  # notes/ is not a run
    best, at = _best_eval(runs_root / "done")
    assert rows["done"][1:7] == ["iresnet_tiny", rows["done"][2], "4/4", f"{best:.4f}", str(at), "completed"]
    assert rows["done"][2].startswith("arcface(s=") and rows["done"][2].endswith(",m=0.5,easy_margin=False)")
    assert rows["short"][3:7] == ["2/2", "–", "–", "completed"]
    assert rows["noeval"][3:7] == ["4/4", "–", "–", "completed"]
    cut_best, cut_at = _best_eval(runs_root / "done", last_step=3)
    assert rows["cut"][3:7] == ["3/4", f"{cut_best:.4f}", str(cut_at), "died"]
    assert rows["interrupted"][6] == "stopped" and rows["blown"][6] == "error"
    assert result.stdout.splitlines()[0].split() == [
        "run", "backbone", "head", "steps", "best", "acc", "@step", "status", "started", "duration",
        "eval_every",  # the schema's options where the runs differ: noeval ran with --eval-every 0
    ]  # fmt: skip


def test_json_is_a_list_of_records_sorted_by_best_accuracy(runs_root):
    records = _json(runs_root)
    by_name = {record["name"]: record for record in records}
    assert by_name["done"]["best_accuracy"] == _best_eval(runs_root / "done")[0]
    assert (by_name["done"]["steps_done"], by_name["done"]["steps_planned"]) == (4, 4)
    assert by_name["interrupted"]["end_reason"] == "interrupted"
    assert by_name["cut"]["end_reason"] is None and by_name["cut"]["status"] == "died"
    accuracies = [record["best_accuracy"] for record in records]
    never = {record["name"] for record in records[-2:]}
    assert never == {"noeval", "short"} and accuracies[-2:] == [None, None]  # never evaluated: last
    assert accuracies[:-2] == sorted(accuracies[:-2], reverse=True)
    assert all(record["duration_s"] > 0 and "T" in record["started"] for record in records)


def test_json_puts_the_most_accurate_run_first(runs_root, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)
    lines = _lines(root / "cut" / "metrics.jsonl")
    boosted = [
        line.replace('"accuracy": ', '"accuracy": 0.999, "was": ') if '"event": "eval"' in line else line
        for line in lines
    ]
    (root / "cut" / "metrics.jsonl").write_text("".join(boosted))
    records = _json(root)
    assert [records[0]["name"], records[0]["best_accuracy"]] == ["cut", 0.999]


def test_csv_reads_back_with_pandas(runs_root):
    result = runner.invoke(app, ["runs", str(runs_root), "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert set(frame["name"][-2:]) == {"noeval", "short"} and len(frame) == 6
    done = frame.set_index("name").loc["done"]
    assert (done["steps_done"], done["steps_planned"], done["status"]) == (4, 4, "completed")
    assert done["best_accuracy"] == pytest.approx(_best_eval(runs_root / "done")[0])


def test_a_run_whose_lock_is_held_is_running(runs_root, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_root / "cut", root / "live")
    with RunLock(RunDir(root / "live")):  # what the trainer holds while it trains
        (record,) = _json(root)
        assert (record["status"], record["steps_done"]) == ("running", 3)
    (record,) = _json(root)
    assert record["status"] == "died"


def test_an_empty_folder_says_so_in_one_line(tmp_path):
    (tmp_path / "notes").mkdir()
    result = runner.invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"no runs under {tmp_path}"
    assert _json(tmp_path) == []


def test_a_missing_folder_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    line = assert_one_line_error(runner.invoke(app, ["runs", str(missing)]))
    assert str(missing) in line and "no such folder" in line


def test_json_and_csv_together_is_one_line(tmp_path):
    line = assert_one_line_error(runner.invoke(app, ["runs", str(tmp_path), "--json", "--csv"]))
    assert "--json" in line and "--csv" in line
