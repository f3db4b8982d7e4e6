"""A run directory is never destroyed, owned by one process, and told the truth on errors (issue 11)."""

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.checkpoint import load_checkpoint
from femb.headers import CosFaceHeader
from femb.training.control import send_request
from femb.training.events import read_events
from femb.training.run_dir import RunDir, RunLock
from femb.training.setup import ThroughputMeter
from femb.training.sinks import JsonlSink


def tiny_run(run_dir, steps=2, **kwargs):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 112, 112, generator=generator), torch.arange(16) % 4)
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 4, s=16.0, m=0.2)
    )
    options = dict(batch_size=8, device="cpu", run_dir=run_dir, max_training_steps=steps, checkpoint_every=1)
    options.update(kwargs)
    return model.fit(data, **options)


def test_an_existing_run_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    tiny_run(run, config={"seed": 1})
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "lock"}
    with pytest.raises(ValueError, match="already holds a run; resume it"):
        tiny_run(run)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before


def test_overwrite_replaces_the_earlier_run_explicitly(tmp_path):
    run = tmp_path / "run"
    tiny_run(run, steps=3)
    tiny_run(run, steps=2, overwrite=True)
    starts = [e for e in read_events(run / "metrics.jsonl") if e["event"] == "start"]
    assert len(starts) == 1  # one model per metrics file, never two mixed
    assert load_checkpoint(run, prefer="last")["training"]["step"] == 2


def test_a_second_owner_is_refused_with_the_owners_pid(tmp_path):
    run = RunDir(tmp_path / "run").create()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from femb.training.run_dir import RunDir, RunLock; "
            f"lock = RunLock(RunDir(__import__('pathlib').Path({str(run.path)!r}))).acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=f"in use by process {holder.pid}"):
            RunLock(run).acquire()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # The kernel released the dead owner's lock: the file left behind is stale and taken over.
    lock = RunLock(run).acquire()
    assert lock.stale_owner == holder.pid
    lock.release()


def test_a_stale_stop_request_does_not_end_the_next_resume(tmp_path):
    run = tmp_path / "run"
    tiny_run(run, steps=2, max_epochs=0)
    send_request(run, "stop")  # left behind by a dashboard after its trainer died
    result = tiny_run(run, steps=4, resume=run)
    assert result.reason == "completed" and result.step == 4
    logs = [e["message"] for e in read_events(run / "metrics.jsonl") if e["event"] == "log"]
    assert any("stale 'stop' request" in message for message in logs)


def test_validation_that_can_never_score_fails_before_the_first_step(tmp_path):
    from femb.data import SyntheticFaces
    from femb.evaluation import VerificationEvaluator

    one_identity = SyntheticFaces(num_identities=1, images_per_identity=4)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="validation set"):
        tiny_run(tmp_path / "run", steps=50, evaluator=VerificationEvaluator(), val_dataset=one_identity)
    assert time.perf_counter() - started < 20
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    with pytest.raises(ValueError, match="must be positive"):
        VerificationEvaluator(num_pairs=0).check(SyntheticFaces(num_identities=3, images_per_identity=3))


def test_a_nonfinite_loss_says_truthfully_that_no_checkpoint_exists(tmp_path):
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 4, s=16.0, m=0.2)
    )
    optimizer = torch.optim.SGD(model.params, lr=float("nan"))
    data = TensorDataset(torch.randn(16, 3, 112, 112), torch.arange(16) % 4)
    result = model.fit(
        data, batch_size=8, device="cpu", optimizer=optimizer, max_training_steps=5, run_dir=tmp_path / "nan"
    )
    assert result.reason == "nonfinite"
    end = read_events(tmp_path / "nan" / "metrics.jsonl")[-1]
    assert "no checkpoint had been written yet" in end["message"]
    assert end["resume_from"] is None


def test_a_torn_metrics_line_is_cut_before_the_next_run_appends(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"event": "step", "step": 1, "time": 0}\n{"event": "step", "st')  # a failed write
    sink = JsonlSink(path)
    sink({"event": "start", "time": 1.0})
    sink.close()
    table = pd.read_json(path, lines=True)  # what the README documents
    assert list(table["event"]) == ["step", "start"]
    assert [e["event"] for e in read_events(path)] == ["step", "start"]


def test_readers_skip_lines_that_are_not_events(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'[1, 2]\n"text"\n\xff\xfe\n{"event": "step", "step": 1}\n{"no_event": 1}\n')
    assert read_events(path) == [{"event": "step", "step": 1}]


def test_throughput_counts_the_images_a_batch_really_holds():
    from femb.training.runtime import Runtime

    meter = ThroughputMeter(step=0)
    meter.count(5)  # a ragged batch of 5 with --batch-size 8
    meter.tick -= 1.0  # one second has passed
    images_per_s, _ = meter.read(step=1, runtime=Runtime(torch.device("cpu")))
    assert images_per_s == pytest.approx(5.0, rel=0.05)


def test_request_files_made_while_running_are_obeyed(tmp_path):
    # The discard happens once, at start: a request made during the run still works.
    run = tmp_path / "run"

    def stop_at_one(event):
        if event["event"] == "step" and event["step"] == 1:
            send_request(run, "stop")

    result = tiny_run(run, steps=5, callbacks=[stop_at_one])
    assert result.reason == "stopped" and result.step == 1
    assert os.path.exists(run / "checkpoints" / "last.pt")


def test_resuming_with_another_network_names_both_in_one_line(tmp_path):
    run = tmp_path / "run"
    tiny_run(run, steps=2)
    torch.manual_seed(0)
    other = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16), CosFaceHeader(16, 4))
    data = TensorDataset(torch.randn(16, 3, 112, 112), torch.arange(16) % 4)
    with pytest.raises(
        ValueError, match=r"written by backbone iresnet_tiny .*embed_dim': 8.* but this run builds"
    ):
        other.fit(data, batch_size=8, device="cpu", max_training_steps=4, run_dir=run, resume=run)
    other = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 5))
    with pytest.raises(ValueError, match="over 4 classes, but this run builds cosface over 5 classes"):
        other.fit(data, batch_size=8, device="cpu", max_training_steps=4, run_dir=run, resume=run)
