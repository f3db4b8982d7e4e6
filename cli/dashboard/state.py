"""What the dashboard knows about a run, folded from its events (no Textual here: plain and testable)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from femb.training.events import Event
from femb_cli.dashboard.fields import as_count as as_count  # ``x as x``: re-exported, imported from here
from femb_cli.dashboard.fields import as_number
from femb_cli.dashboard.fields import as_text as as_text
from femb_cli.dashboard.run_config import config_summary as config_summary
from femb_cli.dashboard.run_config import one_line_summary as one_line_summary
from femb_cli.errors import resume_command

# Long runs must not grow the curves without bound: past this many points a series keeps every second one.
MAX_POINTS = 4096
EMA_BETA = 0.9  # loss smoothing: about the last ten logged steps


@dataclass
class Series:
    """(step, value) points, decimated by two whenever it outgrows ``MAX_POINTS``."""

    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    stride: int = 1
    revision: int = 0  # bumped whenever the stored points change: a plot redraws only then
    _seen: int = 0

    def add(self, x: float, y: float) -> None:
        self._seen += 1
        if (self._seen - 1) % self.stride:
            return
        self.xs.append(x)
        self.ys.append(y)
        self.revision += 1
        if len(self.xs) > MAX_POINTS:
            del self.xs[1::2], self.ys[1::2]
            self.stride *= 2

    def __len__(self) -> int:
        return len(self.xs)

    def thinned(self, limit: int) -> tuple[list[float], list[float]]:
        """At most about ``limit`` points, always with the latest, for a plot ``limit`` dots wide."""
        step = max(1, math.ceil(len(self.xs) / max(limit, 1)))
        if step == 1:
            return self.xs, self.ys
        xs, ys = self.xs[::step], self.ys[::step]
        if xs[-1] != self.xs[-1]:
            xs.append(self.xs[-1])
            ys.append(self.ys[-1])
        return xs, ys


# Values a plot can scale to without overflowing its axis arithmetic.
MAX_PLOTTED = 1e15


def _plottable(value: float | None) -> bool:
    return value is not None and abs(value) <= MAX_PLOTTED


@dataclass
class RunState:
    run_name: str | None = None
    run_dir: str | None = None
    device: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    head_spec: dict[str, Any] | None = None  # the head as built: its options' effective values
    batch_size: int | None = None
    num_classes: int | None = None
    num_parameters: int | None = None
    total_steps: int | None = None
    steps_per_epoch: int | None = None
    world_size: int | None = None  # training processes; images_per_s counts all of them
    start_step: int = 0
    step: int = 0
    epoch: int = 0
    loss: float | None = None
    loss_ema: float | None = None
    lr: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    emb_norm_mean: float | None = None
    emb_norm_std: float | None = None
    last_eval: dict[str, Any] | None = None
    best_eval: dict[str, Any] | None = None
    paused: bool = False
    activity: str | None = None  # a long piece of work between steps: "final evaluation 120/360"
    started: bool = False
    ended: bool = False
    end: dict[str, Any] | None = None
    loss_curve: Series = field(default_factory=Series)
    loss_ema_curve: Series = field(default_factory=Series)
    accuracy_curve: Series = field(default_factory=Series)
    set_curves: dict[str, Series] = field(default_factory=dict)  # each validation set's accuracy, by name
    lr_curve: Series = field(default_factory=Series)
    events_seen: int = 0
    _ema_raw: float = 0.0
    _ema_count: int = 0

    @property
    def progress(self) -> float | None:
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    def apply(self, event: Event) -> None:
        """Fold one event in; unknown kinds and missing fields are tolerated (files from other versions).

        Every field is checked for its type as it is read: a wrong one (``"loss": [1]``, a string,
        a 300-digit number) counts as missing, so nothing stored can break a widget later. A step
        event whose step is unusable raises ``ValueError`` (the dashboard logs and skips it)."""
        if not isinstance(event, dict):
            raise ValueError(f"an event is a JSON object, not {type(event).__name__}")
        self.events_seen += 1
        kind = event.get("event")
        handler = (
            getattr(self, f"_on_{kind}", None) if isinstance(kind, str) and kind.isidentifier() else None
        )
        if handler is not None:
            handler(event)

    def _on_start(self, event: Event) -> None:
        # A resumed run appends a second start event to the same file: keep the curves, reopen the run.
        self.started, self.ended, self.end, self.paused = True, False, None, False
        self.run_name = as_text(event.get("run_name")) or self.run_name
        self.run_dir = as_text(event.get("run_dir"), 4096) or self.run_dir
        self.device = as_text(event.get("device")) or self.device
        config = event.get("config")
        self.config = dict(config) if isinstance(config, dict) else {}
        self.head_spec = event.get("head") if isinstance(event.get("head"), dict) else None
        self.batch_size = as_count(event.get("batch_size")) or as_count(self.config.get("batch_size"))
        self.num_classes = as_count(event.get("num_classes"))
        self.num_parameters = as_count(event.get("num_parameters"))
        self.total_steps = as_count(event.get("total_steps"))
        self.steps_per_epoch = as_count(event.get("steps_per_epoch"))
        self.world_size = as_count(event.get("world_size"))
        self.start_step = as_count(event.get("start_step")) or 0
        self.step = max(self.step, self.start_step)

    def _on_step(self, event: Event) -> None:
        step = as_count(event.get("step", self.step))
        if step is None:
            raise ValueError(f"step {_short(event.get('step'))} is not a step number")
        self.step, self.activity = step, None
        epoch = as_count(event.get("epoch", self.epoch))
        self.epoch = self.epoch if epoch is None else epoch
        self.lr = as_number(event.get("lr"))
        self.images_per_s = as_number(event.get("images_per_s"))
        self.eta_s = as_number(event.get("eta_s"))
        self.emb_norm_mean = as_number(event.get("emb_norm_mean"))
        self.emb_norm_std = as_number(event.get("emb_norm_std"))
        loss = as_number(event.get("loss"))
        self.loss = loss
        if _plottable(loss):  # a loss of 1e308 is shown as a number but kept off the curve
            # Debiased EMA (as TensorBoard smooths): the first points are not dragged towards zero.
            self._ema_count += 1
            self._ema_raw = EMA_BETA * self._ema_raw + (1 - EMA_BETA) * loss
            self.loss_ema = self._ema_raw / (1 - EMA_BETA**self._ema_count)
            self.loss_curve.add(self.step, loss)
            self.loss_ema_curve.add(self.step, self.loss_ema)
        if _plottable(self.lr):
            self.lr_curve.add(self.step, self.lr)

    def _on_eval(self, event: Event) -> None:
        # Only the fields the widgets show, each as its type (a hand-edited line cannot inject markup).
        step = as_count(event.get("step"))
        clean = {key: as_number(event.get(key)) for key in EVAL_NUMBERS}
        clean.update(step=step, is_best=event.get("is_best") is True)
        clean.update(best_on=as_text(event.get("best_on"), 40), sets=eval_sets(event.get("sets")))
        self.last_eval, self.activity = clean, None
        self.step = max(self.step, step or 0)
        at = self.step if step is None else step
        for name, figures in clean["sets"].items():
            room = name in self.set_curves or len(self.set_curves) < MAX_SETS
            if _is_accuracy(figures["accuracy"]) and room:
                self.set_curves.setdefault(name, Series()).add(at, figures["accuracy"])
        accuracy = clean["accuracy"]
        if _is_accuracy(accuracy):
            self.accuracy_curve.add(at, accuracy)
            best = (self.best_eval or {}).get("accuracy")
            if best is None or accuracy > best or clean["is_best"]:
                self.best_eval = clean

    def _on_pause(self, event: Event) -> None:
        self.paused = event.get("paused") is True

    def _on_progress(self, event: Event) -> None:
        done, total = as_count(event.get("done")), as_count(event.get("total"))
        finished = done is not None and total is not None and done >= total
        self.activity = None if finished else progress_text(event)

    def _on_end(self, event: Event) -> None:
        self.ended, self.paused, self.activity = True, False, None
        self.end = {
            "step": as_count(event.get("step")),
            "reason": as_text(event.get("reason"), 40),
            "message": as_text(event.get("message"), 1000),
            "resume_command": as_text(resume_command(event), 4096),
        }
        self.step = self.end["step"] or self.step
        self.eta_s = None


EVAL_NUMBERS = ("accuracy", "accuracy_std", "threshold", "eer", "auc", "tar_at_far_1e-3", "tar_at_far_1e-4")
MAX_SETS = 8  # validation sets drawn and listed; a run with more shows the first ones
SET_NAME_WIDTH = 24


def eval_sets(sets: Any) -> dict[str, dict[str, float | None]]:
    """Each validation set's figures from an eval event's ``sets`` (name → figures), checked like
    every other field: names are short plain strings, figures numbers."""
    if not isinstance(sets, dict):
        return {}
    clean = {}
    for name, figures in sets.items():
        name = as_text(name, SET_NAME_WIDTH)
        if name is not None and isinstance(figures, dict) and len(clean) < MAX_SETS:
            clean[name] = {key: as_number(figures.get(key)) for key in EVAL_NUMBERS}
    return clean


def sets_text(event: Event) -> str:
    """``  lfw 0.9950 · cfp_fp 0.9400`` for an eval event with several sets ('' with one or none)."""
    sets = eval_sets(event.get("sets"))
    if len(sets) < 2:
        return ""
    return "  " + " · ".join(f"{name} {fmt(figures['accuracy'])}" for name, figures in sets.items())


def _is_accuracy(value: float | None) -> bool:
    return value is not None and 0.0 <= value <= 1.0


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:39] + "…"


# ---------------------------------------------------------------------------------------- formatting


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def fmt(value: Any, spec: str = ".4f") -> str:
    number = as_number(value)
    return "–" if number is None else format(number, spec)


def integer_ticks(low: float, high: float, count: int = 5) -> list[int]:
    """Round step numbers for an x axis from ``low`` to ``high`` (plotext would print 50.8)."""
    low, high = int(math.floor(low)), int(math.ceil(high))
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    spacing = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    spacing = max(1, int(spacing))
    first = math.ceil(low / spacing) * spacing
    return list(range(first, high + 1, spacing)) or [low]


TASK_NAMES = {
    "evaluation": "evaluation",
    "projector": "TensorBoard projector",
    "validation images": "reading the validation images",
}


def progress_text(event: Event) -> str:
    """``final evaluation at step 200: 120/360 images`` from a ``progress`` event (checked fields)."""
    task = as_text(event.get("task"), 40) or "work"
    name = TASK_NAMES.get(task, task)
    if task == "evaluation" and event.get("final") is True:
        name = "final evaluation"
    step, done, total = as_count(event.get("step")), as_count(event.get("done")), as_count(event.get("total"))
    where = "" if step is None else f" at step {step:,}"
    if total is None:
        return f"{name}{where}: started"
    return f"{name}{where}: {done or 0:,}/{total:,} images"


def status_word(state: RunState) -> str:
    if state.ended:
        return as_text((state.end or {}).get("reason")) or "ended"
    if state.paused:
        return "paused"
    if state.activity:
        return state.activity
    return "running" if state.started else "waiting"
