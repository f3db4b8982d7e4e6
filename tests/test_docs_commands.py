"""Every command shown in README.md and docs/*.md runs, as a newcomer would type it.

The convention (docs/index.md, "How the examples are tested"): each line of a ```sh, ```bash or
```console fence and each ```python fence runs, in order, page by page, in a scratch copy of the
examples' files; ```text fences and fences marked ``untested`` are shown, not run; the one fence
marked ``setup`` makes the examples' files. Training is made small here, never in the pages:
`femb demo` and `femb train` lines get ``--steps 2`` (except `--detach`, whose run the page stops)
and, where a line does not choose them, a tiny backbone, synthetic data and a small batch. Pages
run two at a time.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from femb.data.synthetic import render_face

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"sh", "bash", "console"}
MAX_UNTESTED = 10  # each one is a promise no test keeps: keep the list short
COMMAND_TIMEOUT_S = 600  # a hang, not a slow machine

FENCE = re.compile(r"^```(\w*)[ \t]*(.*)$")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@dataclass
class Fence:
    page: Path
    line: int
    language: str
    marks: set[str]
    body: str

    @property
    def runs(self) -> bool:
        return (self.language in SHELL_LANGUAGES or self.language == "python") and not (
            self.marks & {"untested", "setup"}
        )

    def commands(self) -> list[str]:
        """The shell lines as typed (console: the `$ ` lines); `\\` continues a line."""
        commands, pending = [], ""
        for line in self.body.splitlines():
            if self.language == "console" and not pending:
                if not line.startswith("$ "):
                    continue  # output, not a command
                line = line[2:]
            pending += line.strip() if pending else line
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip() + " "
                continue
            if pending.strip() and not pending.lstrip().startswith("#"):
                commands.append(pending.strip())
            pending = ""
        return commands


def read_fences(page: Path) -> list[Fence]:
    fences, current, body = [], None, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if current is None and match:
            current, body = Fence(page, number, match[1], set(match[2].split()), ""), []
        elif current is not None and line.strip() == "```":
            current.body = "\n".join(body)
            fences.append(current)
            current = None
        elif current is not None:
            body.append(line)
    assert current is None, f"{page.name}:{current.line}: a fence that is never closed"
    return fences


SMALL_TRAINING = {
    "--backbone": ["--backbone", "iresnet_tiny", "--embed-dim", "16"],
    "--data": ["--data", "synthetic:8"],
    "--val": ["--val", "synthetic:6"],
    "--batch-size": ["--batch-size", "8"],
}


def small(command: str) -> str:
    """The command with training made small: what the test runs in CI instead of a long run."""
    words = shlex.split(command, comments=True)
    if words[:2] == ["femb", "demo"]:
        return shlex.join([*words, "--steps", "2", "--identities", "4"])
    if words[:2] != ["femb", "train"] or "--resume" in words:
        return command
    extra = [] if "--detach" in words else ["--steps", "2"]  # the next line stops a detached run
    for option, values in SMALL_TRAINING.items():
        if option not in words and not (option == "--backbone" and "--init-backbone" in words):
            extra += values
    return shlex.join([*words, *extra])


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"COLUMNS": "80", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def run_fence(fence: Fence, folder: Path) -> tuple[bool, str]:
    """Run one fence in ``folder``; (passed, what ran and what it printed)."""
    log = []
    if fence.language == "python":
        script = folder / f"_snippet_{fence.page.stem}_{fence.line}.py"
        script.write_text(fence.body + "\n", encoding="utf-8")
        commands = [f"python {script.name}"]
    else:
        commands = [small(command) for command in fence.commands()]
    for command in commands:
        started = time.monotonic()
        try:
            done = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=environment(), capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return False, "\n".join([*log, f"$ {command}", f"timed out after {COMMAND_TIMEOUT_S} s"])
        seconds = time.monotonic() - started
        log.append(f"$ {command}  ({seconds:.0f} s)\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        if done.returncode != 0:
            log.append(f"exit status {done.returncode} ({fence.page.name}:{fence.line})")
            return False, "\n".join(log)
    return True, "\n".join(log)


def run_page(page: Path, workspace: Path, scratch: Path) -> tuple[bool, str]:
    folder = scratch / page.stem
    shutil.copytree(workspace, folder, symlinks=True)
    logs = []
    for fence in read_fences(page):
        if fence.runs:
            passed, log = run_fence(fence, folder)
            logs.append(log)
            if not passed:
                return False, "\n".join(logs)
    return True, "\n".join(logs)


def write_faces(folder: Path, people: int = 8, photos: int = 5) -> None:
    """`faces/`: an image folder as a user's photos would be (JPEGs named as in LFW), drawn from
    the synthetic faces."""
    for person in range(people):
        name = f"person_{person:02d}"
        (folder / name).mkdir(parents=True)
        for photo in range(photos):
            image = Image.fromarray(render_face(seed=0, identity=person, index=photo))
            image.save(folder / name / f"{name}_{photo + 1:04d}.jpg", quality=95)


def make_workspace(folder: Path) -> None:
    """The examples' files before the setup fence: `faces/`, and the repository's `benchmarks/`
    (the pages run its scripts from a clone's root)."""
    write_faces(folder / "faces")
    (folder / "benchmarks").symlink_to(ROOT / "benchmarks", target_is_directory=True)


def all_fences() -> list[Fence]:
    return [fence for page in PAGES for fence in read_fences(page)]


@pytest.fixture(scope="module")
def page_results(tmp_path_factory) -> dict[str, tuple[bool, str]]:
    workspace = tmp_path_factory.mktemp("docs-workspace")
    make_workspace(workspace)
    (setup,) = [fence for fence in all_fences() if "setup" in fence.marks]
    passed, log = run_fence(setup, workspace)
    assert passed, log
    scratch = tmp_path_factory.mktemp("docs-pages")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {page.name: pool.submit(run_page, page, workspace, scratch) for page in PAGES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_of_the_page_runs(page, page_results):
    passed, log = page_results[page.name]
    assert passed, log


def test_the_pages_show_commands_and_few_are_left_untested():
    fences = all_fences()
    assert sum(fence.runs and fence.language in SHELL_LANGUAGES for fence in fences) >= 20
    untested = [f"{fence.page.name}:{fence.line}" for fence in fences if "untested" in fence.marks]
    assert len(untested) <= MAX_UNTESTED, untested
    assert len([fence for fence in fences if "setup" in fence.marks]) == 1
    readme = read_fences(ROOT / "README.md")
    shown = [command for fence in readme if fence.language in SHELL_LANGUAGES for command in fence.commands()]
    assert "femb demo" in shown and "python -m pytest -q -p no:cacheprovider" in shown


def test_the_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "\npython -m pytest -q -p no:cacheprovider\n" in ci


def test_small_shrinks_training_and_nothing_else():
    assert small("femb demo") == "femb demo --steps 2 --identities 4"
    trained = shlex.split(small("femb train --data faces/ --steps 200  # a comment"))
    assert trained[:4] == ["femb", "train", "--data", "faces/"] and trained[-2:] != ["--data", "synthetic:8"]
    assert trained[trained.index("--steps", 5) + 1] == "2" and "--backbone" in trained
    tuned = shlex.split(small("femb train --init-backbone runs/demo"))
    assert "--backbone" not in tuned
    assert small("femb train --resume runs/x") == "femb train --resume runs/x"
    assert small("femb export onnx runs/x -o a.onnx") == "femb export onnx runs/x -o a.onnx"


def test_console_fences_run_only_prompted_lines():
    fence = Fence(ROOT, 1, "console", set(), "$ femb runs \\\n    --json\n[]\n# not a command\n$ femb info")
    assert fence.commands() == ["femb runs --json", "femb info"]


def test_relative_links_point_at_files():
    missing = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} → {target}")
    assert not missing, missing
