"""Which onnxruntime execution providers are listed, which really work, and which to use.

onnxruntime-gpu lists ``CUDAExecutionProvider`` whether or not CUDA and cuDNN can be loaded;
when they cannot, creating a session silently falls back to the CPU after printing native
error lines (and a Python ``EP Error`` banner for TensorRT). So a provider is probed once per
process on a one-node in-memory model, with the native output captured, and the outcome (with
a one-line reason) is remembered.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDER_CHOICES = ("auto", "cuda", "cpu")
_SHORT_NAMES = {CPU: "cpu", CUDA: "cuda", "TensorrtExecutionProvider": "tensorrt"}


class ProviderError(RuntimeError):
    """An execution provider explicitly asked for does not work here."""


@dataclass(frozen=True)
class ProbeResult:
    provider: str
    works: bool
    reason: str = ""


@dataclass(frozen=True)
class ProviderChoice:
    """The providers to give a session, the one that will run, and a note for the user (or '')."""

    providers: list[str]
    provider: str
    note: str = ""

    @property
    def name(self) -> str:
        return short_name(self.provider)


def available_providers() -> list[str]:
    """The providers this onnxruntime build lists (not all of them necessarily work)."""
    return list(ort.get_available_providers())


def short_name(provider: str) -> str:
    return _SHORT_NAMES.get(provider, provider.removesuffix("ExecutionProvider").lower())


@functools.cache
def probe_provider(provider: str) -> ProbeResult:
    """Create a session with ``provider`` alone on a tiny model and see whether it is really used."""
    if provider not in available_providers():
        return ProbeResult(provider, False, "not in this onnxruntime build")
    if provider == CPU:
        return ProbeResult(provider, True)
    from femb.inference.runtime import create_session

    ort.set_default_logger_severity(3)
    try:
        with captured_native_output() as captured:
            try:
                session = create_session(_probe_model(), [provider])
                used = session.get_providers()
                error = ""
            except Exception as exc:  # noqa: BLE001 - any failure means "does not work"; the reason is kept
                used, error = [], str(exc)
    finally:
        # onnxruntime cannot report the previous level; 2 (warnings) is its default.
        ort.set_default_logger_severity(2)
    if used and used[0] == provider:
        return ProbeResult(provider, True)
    return ProbeResult(provider, False, _reason(error + "\n" + captured.text))


def working_providers() -> list[str]:
    """The listed providers that really create a session here (CPU always among them)."""
    return [p for p in available_providers() if probe_provider(p).works]


def parse_provider(requested: str) -> str:
    """``requested`` as one of :data:`PROVIDER_CHOICES` (any case); else one ``ValueError``.

    Cheap (probes nothing): commands check the provider name with it before any work starts."""
    name = str(requested).strip().lower()
    if name not in PROVIDER_CHOICES:
        raise ValueError(f"unknown provider {requested!r}; choices: {', '.join(PROVIDER_CHOICES)}")
    return name


def select_provider(requested: str = "auto") -> ProviderChoice:
    """Providers for a session: ``auto`` (CUDA if it works, else CPU), ``cuda`` or ``cpu``.

    ``auto`` on a build that lists CUDA but cannot use it gives the note
    ``CUDA execution provider unavailable (reason); using CPU``. ``cuda`` that does not work
    raises :class:`ProviderError` with a one-line message.
    """
    requested = parse_provider(requested)
    if requested == "cpu":
        return ProviderChoice([CPU], CPU)
    cuda = probe_provider(CUDA)
    if cuda.works:
        return ProviderChoice([CUDA, CPU], CUDA)
    if requested == "cuda":
        raise ProviderError(f"CUDA execution provider requested but unavailable ({cuda.reason})")
    note = ""
    if CUDA in available_providers():
        note = f"CUDA execution provider unavailable ({cuda.reason}); using CPU"
    return ProviderChoice([CPU], CPU, note)


# ---------------------------------------------------------------------------------------- internals
class _Captured:
    text = ""


@contextlib.contextmanager
def captured_native_output() -> Iterator[_Captured]:
    """Send file descriptors 1 and 2 (native C++ logs and Python prints alike) to a temporary file."""
    captured = _Captured()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real descriptors (an embedded interpreter): capture nothing
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            # Python-level streams replaced too: pytest and CliRunner swap sys.stdout for objects
            # that do not write to descriptor 1.
            with contextlib.redirect_stdout(_FdWriter(sink)), contextlib.redirect_stderr(_FdWriter(sink)):
                yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")


class _FdWriter:
    def __init__(self, sink):
        self._sink = sink

    def write(self, text: str) -> int:
        self._sink.write(text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        self._sink.flush()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REASON_PATTERNS = (
    re.compile(r"with error: ([^\n]+)"),  # a shared library that cannot be loaded
    re.compile(r"(Require cuDNN \S+ and CUDA \d+(?:\.\*)?)"),  # the required CUDA / cuDNN versions
    re.compile(r"(CUDA failure[^\n]*)"),
    re.compile(r"(no CUDA-capable device[^\n]*)", re.IGNORECASE),
)


def _reason(text: str) -> str:
    """A short reason from onnxruntime's native messages."""
    text = _ANSI.sub("", text)
    for pattern in _REASON_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).strip().rstrip(".")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"*"}]
    if lines:
        line = lines[0]
        return line if len(line) <= 160 else line[:157] + "..."
    return "the session fell back to the CPU"


@functools.lru_cache(maxsize=1)
def _probe_model() -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node("Add", ["x", "x"], ["y"])
    graph = helper.make_graph(
        [node],
        "femb_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this package admits
    return model.SerializeToString()
