"""The dashboard's widgets: each one draws part of a ``RunState`` and owns its CSS."""

from __future__ import annotations

import time

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, RichLog, Static
from textual_plotext import PlotextPlot

from femb_cli.dashboard.state import (
    RunState,
    config_summary,
    fmt,
    format_duration,
    integer_ticks,
    status_word,
)

# Plain named colours: they survive tmux and 256-colour terminals.
RAW_COLOUR, SMOOTH_COLOUR, ACCURACY_COLOUR = "cyan", "orange", "green"
# One per validation set, in the order the sets are listed; names both plotext and Rich know.
SET_COLOURS = (ACCURACY_COLOUR, "cyan", "magenta", "yellow", "blue", "red", "white", "bright_green")


def set_colour(index: int) -> str:
    return SET_COLOURS[index % len(SET_COLOURS)]


class RunPlot(PlotextPlot):
    """A plotext chart redrawn on demand (the app throttles how often), thinned to its width."""

    DEFAULT_CSS = """
    RunPlot {
        height: 1fr;
        width: 1fr;
        min-height: 6;
    }
    """

    title = ""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._version = 0
        self._drawn_revision = -1
        self._cache_key: tuple | None = None
        self._cached = None

    def on_mount(self) -> None:
        super().on_mount()
        self.plt.title(self.title)

    def render(self):
        # plotext rebuilds the whole chart on every render, and Textual renders again on any layout
        # change elsewhere: build once per new data, size or theme.
        key = (self._version, self.size, self.app.theme, self.theme)
        if key != self._cache_key:
            self._cached, self._cache_key = super().render(), key
        return self._cached

    def dots_wide(self) -> int:
        # Braille gives two dots per cell; the y-axis labels take about ten cells.
        return max(8, (self.size.width - 10) * 2)

    def draw(self, state: RunState, force: bool = False) -> float:
        """Rebuild the chart if its data changed; returns the seconds that took (0.0 when skipped)."""
        revision = self.revision(state)
        if revision == self._drawn_revision and not force:
            return 0.0
        start = time.perf_counter()
        plt = self.plt
        plt.clear_data()
        plt.title(self.title)
        self.draw_data(state)
        self._drawn_revision = revision
        self._version += 1
        if self.size.area:
            self.render()  # build now (cached for the compositor) so that its cost is measured here
        self.refresh()
        return time.perf_counter() - start

    def revision(self, state: RunState) -> int:
        raise NotImplementedError

    def draw_data(self, state: RunState) -> None:
        raise NotImplementedError

    def step_axis(self, xs: list[float]) -> None:
        ticks = integer_ticks(xs[0], xs[-1], count=5 if self.size.width >= 50 else 3)
        self.plt.xticks(ticks, [f"{tick:,}" for tick in ticks])


class LossPlot(RunPlot):
    title = "loss"

    def revision(self, state: RunState) -> int:
        return state.loss_curve.revision

    def draw_data(self, state: RunState) -> None:
        if not state.loss_curve:
            return
        xs, ys = state.loss_curve.thinned(self.dots_wide())
        self.plt.plot(xs, ys, marker="braille", color=RAW_COLOUR, label="loss")
        xs, ys = state.loss_ema_curve.thinned(self.dots_wide())
        self.plt.plot(xs, ys, marker="braille", color=SMOOTH_COLOUR, label="EMA")
        self.step_axis(xs)


class AccuracyPlot(RunPlot):
    title = "verification accuracy"

    def revision(self, state: RunState) -> int:
        return state.accuracy_curve.revision + sum(curve.revision for curve in state.set_curves.values())

    def draw_data(self, state: RunState) -> None:
        """One curve, or with several validation sets one per set, coloured as the metrics pane
        lists them, with a legend of their names."""
        several = len(state.set_curves) > 1
        curves = list(state.set_curves.values()) if several else [state.accuracy_curve]
        names = list(state.set_curves) if several else [None]
        drawn_xs, drawn_ys = [], []
        for index, (name, curve) in enumerate(zip(names, curves, strict=True)):
            if not curve:
                continue
            xs, ys = curve.thinned(self.dots_wide())
            self.plt.plot(xs, ys, marker="hd", color=set_colour(index), label=name)
            drawn_xs += xs
            drawn_ys += ys
        if not drawn_xs:
            return
        self.step_axis(sorted(drawn_xs))
        if len(set(drawn_ys)) == 1:  # one value: give the y axis a visible range around it
            self.plt.ylim(max(0.0, drawn_ys[0] - 0.05), min(1.0, drawn_ys[0] + 0.05))
        else:
            self.plt.ylim()


class MetricsPanel(Static):
    """Current and best numbers: loss, learning rate, speed, verification metrics."""

    DEFAULT_CSS = """
    MetricsPanel {
        width: 38;
        height: 1fr;
        border: round $primary-darken-2;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    """

    def on_mount(self) -> None:
        self.border_title = "metrics"

    def show(self, state: RunState) -> None:
        self.update(metrics_text(state), layout=False)  # fixed size: no layout pass per update


def label_rows(rows: list[tuple[str | Text, str]], label_width: int) -> Text:
    """``label  value`` lines (values may hold Rich markup; a label may be styled Text), cropped
    rather than wrapped.

    Plain Text, not a Rich Table: the panel redraws every second and a Table's measuring costs
    ten times as much.
    """
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    for index, (label, value) in enumerate(rows):
        if index:
            text.append("\n")
        if isinstance(label, Text):
            text.append_text(label)
            text.append(" " * max(1, label_width + 1 - label.cell_len))
        else:
            text.append(f"{label:<{label_width}} ", style="bold")
        text.append_text(Text.from_markup(value))
    return text


def metrics_text(state: RunState) -> Text:
    last, best = state.last_eval or {}, state.best_eval or {}
    at = f" [dim]@{last['step']}[/]" if last.get("step") is not None else ""
    best_at = f" [dim]@{best['step']}[/]" if best.get("step") is not None else ""
    speed = f"{fmt(state.images_per_s, ',.1f')} img/s" if state.images_per_s is not None else "–"
    if state.images_per_s is not None and state.world_size and state.world_size > 1:
        speed += f" [dim]{state.world_size} procs[/]"  # images_per_s already counts every process
    tar = f"{fmt(last.get('tar_at_far_1e-3'))} [dim]1e-3[/]  {fmt(last.get('tar_at_far_1e-4'))} [dim]1e-4[/]"
    if len(last.get("sets") or {}) > 1:
        return label_rows(several_sets_rows(state, speed), 8)
    rows = [
        ("loss", f"{fmt(state.loss)}  [dim]EMA[/] {fmt(state.loss_ema)}"),
        ("lr", fmt(state.lr, ".4g")),
        ("speed", speed),
        ("ETA", format_duration(state.eta_s)),
        ("accuracy", f"{fmt(last.get('accuracy'))} ± {fmt(last.get('accuracy_std'))}{at}"),
        ("best", f"[b green]{fmt(best.get('accuracy'))}[/]{best_at}"),
        ("EER/AUC", f"{fmt(last.get('eer'))} / {fmt(last.get('auc'))}"),
        ("TAR@FAR", tar),
        ("‖emb‖", f"{fmt(state.emb_norm_mean, '.2f')} ± {fmt(state.emb_norm_std, '.2f')}"),
    ]
    return label_rows(rows, 8)


def several_sets_rows(state: RunState, speed: str) -> list[tuple[str, str]]:
    """The metrics pane of a run with several validation sets: each set's latest accuracy (its
    name in its curve's colour), then the best, ordered so that at 80×24 (eight rows) five sets
    and the best still show; what follows is cropped first."""
    last, best = state.last_eval or {}, state.best_eval or {}
    colours = {name: set_colour(index) for index, name in enumerate(state.set_curves)}
    rows = [("loss", f"{fmt(state.loss)}  [dim]EMA[/] {fmt(state.loss_ema)}"), ("speed", speed)]
    for name, figures in last["sets"].items():
        label = Text(name if len(name) <= 8 else name[:7] + "…", style=f"bold {colours.get(name, '')}")
        rows.append((label, f"{fmt(figures.get('accuracy'))} ± {fmt(figures.get('accuracy_std'))}"))
    best_on = escape(last.get("best_on") or "mean")
    best_at = f" [dim]@{best['step']} on {best_on}[/]" if best.get("step") is not None else ""
    rows.append(("best", f"[b green]{fmt(best.get('accuracy'))}[/]{best_at}"))
    if best_on == "mean":
        at = f" [dim]@{last['step']}[/]" if last.get("step") is not None else ""
        rows.append(("mean", fmt(last.get("accuracy")) + at))
    rows += [
        ("lr", fmt(state.lr, ".4g")),
        ("ETA", format_duration(state.eta_s)),
        ("‖emb‖", f"{fmt(state.emb_norm_mean, '.2f')} ± {fmt(state.emb_norm_std, '.2f')}"),
    ]
    return rows


class ConfigPanel(Static):
    """What the run is, from its start event's config."""

    DEFAULT_CSS = """
    ConfigPanel {
        width: 40;
        height: 1fr;
        border: round $primary-darken-2;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    """

    def on_mount(self) -> None:
        self.border_title = "run"

    def show(self, state: RunState) -> None:
        rows = [(label, escape(value)) for label, value in config_summary(state)]
        self.update(label_rows(rows, max([8, *(len(label) for label, _ in rows)])), layout=False)


class RunLog(RichLog):
    """Warnings, evaluations, checkpoints and the end; ``lines_text`` keeps the plain text for tests."""

    DEFAULT_CSS = """
    RunLog {
        width: 1fr;
        height: 1fr;
        border: round $primary-darken-2;
        border-title-color: $text-muted;
        scrollbar-size-vertical: 1;
    }
    """

    STYLES = {"warning": "yellow", "error": "bold red", "good": "green", "action": "cyan", "info": ""}

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=1000, wrap=True, min_width=20, **kwargs)
        self.lines_text: list[str] = []

    def on_mount(self) -> None:
        self.border_title = "log"

    def add(self, message: str, style: str = "info") -> None:
        self.lines_text.append(message)
        del self.lines_text[:-1000]
        self.write(Text(message, style=self.STYLES.get(style, style)))


class StatusBar(Horizontal):
    """The progress bar over steps and one line of where the run is."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        padding: 0 1;
    }
    StatusBar ProgressBar {
        width: auto;
        margin-right: 1;
    }
    StatusBar #status-text {
        width: 1fr;
        height: 1;
    }
    """

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=None, show_eta=False, id="progress")
        yield Static("waiting for the run to start", id="status-text")

    def show(self, state: RunState, note: str = "") -> None:
        bar = self.query_one(ProgressBar)
        if state.total_steps:
            bar.update(total=state.total_steps, progress=min(state.step, state.total_steps))
        total = f"/{state.total_steps:,}" if state.total_steps else ""
        parts = [f"step {state.step:,}{total}", f"epoch {state.epoch}"]
        if not state.ended:
            parts.append(f"ETA {format_duration(state.eta_s)}")
        word = status_word(state)
        busy = "cyan" if word == state.activity else "red"
        colour = {"running": "green", "paused": "yellow", "completed": "green"}.get(word, busy)
        text = Text(" · ".join(parts) + " · ")
        text.append(word, style=f"bold {colour}")
        if note:
            text.append(f" · {note}", style="italic")
        self.query_one("#status-text", Static).update(text, layout=False)
