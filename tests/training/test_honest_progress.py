"""Long pieces of work between steps report progress, and they are not counted as training time
(issue 12, item 5)."""

import time

import pytest
import torch
from torch.utils.data import TensorDataset

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import SyntheticFaces
from femb.evaluation import VerificationEvaluator
from femb.headers import CosFaceHeader
from femb.training.runtime import Runtime
from femb.training.setup import ThroughputMeter
from femb_cli.dashboard.state import RunState, status_word
from femb_cli.progress import ProgressPrinter, progress_bar


def tiny_fit(tmp_path, **kwargs):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 112, 112, generator=generator), torch.arange(32) % 4)
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 4, s=16.0, m=0.2)
    )
    events = []
    options = dict(batch_size=8, device="cpu", run_dir=tmp_path / "run", max_training_steps=3, seed=0)
    options.update(kwargs)
    model.fit(data, callbacks=[events.append], **options)
    return events


def test_the_final_evaluation_and_the_projector_report_progress(tmp_path):
    validation = SyntheticFaces(num_identities=4, images_per_identity=6)
    events = tiny_fit(
        tmp_path,
        evaluator=VerificationEvaluator(n_folds=2, num_pairs=40, batch_size=8),
        val_dataset=validation,
        evaluation_steps=2,
        eval_batch_size=8,
        tensorboard=True,
    )
    kinds = [e["event"] for e in events]
    progress = [e for e in events if e["event"] == "progress"]
    evaluation = [e for e in progress if e["task"] == "evaluation"]
    # Step 2's evaluation, then the final one at step 3, each announced at 0 and closed at total.
    announced = [e for e in evaluation if e["done"] == 0]
    assert [(e["step"], e["final"]) for e in announced] == [(2, False), (3, True)]
    finished = [e for e in evaluation if e["total"] is not None and e["done"] == e["total"]]
    assert [e["step"] for e in finished] == [2, 3] and finished[0]["total"] > 8  # several batches
    # Each evaluation's progress comes before its eval event.
    final_eval = max(i for i, k in enumerate(kinds) if k == "eval")
    assert kinds.index("progress", final_eval - 3) < final_eval
    # The projector: announced and finished before the end event, not after it.
    projector = [e for e in progress if e["task"] == "projector"]
    assert projector[0]["done"] == 0 and projector[-1]["done"] == projector[-1]["total"] == 24
    assert events.index(projector[-1]) < kinds.index("end")
    assert (tmp_path / "run" / "tensorboard" / "projector_config.pbtxt").is_file()


def test_a_user_evaluator_without_a_progress_hook_still_runs(tmp_path):
    class Plain(VerificationEvaluator):
        def evaluate(self, embed_fn, dataset, batch_size=None):  # the original signature
            return super().evaluate(embed_fn, dataset, batch_size)

    events = tiny_fit(
        tmp_path, evaluator=Plain(n_folds=2, num_pairs=20), val_dataset=SyntheticFaces(num_identities=4)
    )
    assert [e["step"] for e in events if e["event"] == "eval"] == [3]


def test_evaluation_and_checkpoint_time_is_not_training_time():
    runtime = Runtime(torch.device("cpu"))
    meter = ThroughputMeter(step=0)
    meter.count(10)
    meter.tick -= 1.0  # one second of training
    with meter.excluded():
        with meter.excluded():  # a best checkpoint inside an evaluation
            time.sleep(0.3)
    images_per_s, steps_per_s = meter.read(step=2, runtime=runtime)
    assert images_per_s == pytest.approx(10.0, rel=0.05)  # the 0.3 s of evaluation is left out
    assert steps_per_s == pytest.approx(2.0, rel=0.05)


def test_the_final_evaluation_is_announced_in_plain_lines_and_on_the_dashboard():
    import io

    stream = io.StringIO()
    printer = ProgressPrinter(interval_s=0.0, stream=stream)
    announce = {
        "event": "progress",
        "task": "evaluation",
        "step": 200,
        "done": 0,
        "total": None,
        "final": True,
    }
    half = {**announce, "done": 120, "total": 360}
    printer(announce)
    printer(half)
    assert stream.getvalue().splitlines() == [
        "final evaluation at step 200: started",
        "final evaluation at step 200: 120/360 images",
    ]
    state = RunState()
    state.apply({"event": "start", "total_steps": 200})
    state.apply(half)
    assert status_word(state) == "final evaluation at step 200: 120/360 images"
    state.apply({**half, "done": 360})
    assert status_word(state) == "running"


def test_a_periodic_evaluation_is_quiet_in_plain_lines_unless_it_is_long():
    import io

    stream = io.StringIO()
    printer = ProgressPrinter(interval_s=3600.0, stream=stream)
    printer({"event": "progress", "task": "evaluation", "step": 50, "done": 0, "total": None, "final": False})
    printer({"event": "progress", "task": "evaluation", "step": 50, "done": 64, "total": 128, "final": False})
    assert stream.getvalue() == ""


def test_off_a_terminal_a_long_job_prints_plain_lines_and_a_short_one_nothing():
    import io

    stream = io.StringIO()
    with progress_bar("embedding", interval_s=0.0, stream=stream) as update:
        update(32, 64)
        update(64, 64, detail="last batch")
    assert stream.getvalue().splitlines() == [
        "embedding: 32/64 images",
        "embedding: 64/64 images (last batch)",
        "embedding: 64/64 images (last batch) in 0m00s",
    ]
    quiet = io.StringIO()
    with progress_bar("embedding", interval_s=3600.0, stream=quiet) as update:
        update(64, 64)
    assert quiet.getvalue() == ""
