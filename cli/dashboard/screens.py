"""The stop confirmation: a small modal answered with y / n (and d to detach from another process's run)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

STOP, DETACH, CANCEL = "stop", "detach", "cancel"


class ConfirmStopScreen(ModalScreen[str]):
    """Dismissed with ``"stop"``, ``"detach"`` (attached mode only) or ``"cancel"``."""

    DEFAULT_CSS = """
    ConfirmStopScreen {
        align: center middle;
    }
    ConfirmStopScreen > Vertical {
        width: 56;
        max-width: 90%;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    ConfirmStopScreen #question {
        text-style: bold;
        margin-bottom: 1;
    }
    ConfirmStopScreen #resume {
        color: $accent;
        margin-bottom: 1;
    }
    """

    BINDINGS = [
        Binding("y", "answer('stop')", "Stop training"),
        Binding("n,escape", "answer('cancel')", "Keep training"),
    ]

    def __init__(self, attached: bool = False, run_dir: str | None = None):
        super().__init__()
        self.attached = attached
        self.run_dir = run_dir or "RUN_DIR"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Stop training?", id="question")
            yield Static("The loop finishes its step, saves checkpoints/last.pt and ends. To continue later:")
            yield Static(f"femb train --resume {self.run_dir}", id="resume", markup=False)
            keys = "[b]y[/] stop  [b]n[/] keep training"
            if self.attached:
                keys += "  [b]d[/] detach, let it run"
            yield Static(keys, id="keys")

    def on_key(self, event) -> None:
        # Detaching exists only when the run belongs to another process; a binding would show it always.
        if self.attached and event.key == "d":
            event.stop()
            self.dismiss(DETACH)

    def action_answer(self, answer: str) -> None:
        self.dismiss(answer)
