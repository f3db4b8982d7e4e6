"""Provider choice: listed vs really working, the one-line CUDA fallback note, no native noise."""

from __future__ import annotations

import pytest

from femb.inference import providers
from femb.inference.providers import (
    CPU,
    CUDA,
    ProbeResult,
    ProviderError,
    available_providers,
    probe_provider,
    select_provider,
    working_providers,
)


@pytest.fixture
def cuda_broken(monkeypatch):
    """A build that lists CUDA whose libraries cannot be loaded (onnxruntime-gpu without CUDA)."""
    monkeypatch.setattr(providers, "available_providers", lambda: [CUDA, CPU])
    results = {
        CUDA: ProbeResult(CUDA, False, "libcublasLt.so.12: cannot open shared object file"),
        CPU: ProbeResult(CPU, True),
    }
    monkeypatch.setattr(providers, "probe_provider", lambda name: results[name])


def test_cpu_is_listed_and_works():
    assert CPU in available_providers()
    assert CPU in working_providers()
    assert select_provider("cpu").providers == [CPU]


def test_auto_falls_back_with_one_line_note(cuda_broken):
    choice = select_provider("auto")
    assert choice.providers == [CPU] and choice.name == "cpu"
    assert choice.note == (
        "CUDA execution provider unavailable (libcublasLt.so.12: cannot open shared object file); using CPU"
    )


def test_explicit_cuda_that_does_not_work_is_an_error(cuda_broken):
    with pytest.raises(
        ProviderError, match=r"^CUDA execution provider requested but unavailable \(libcublasLt"
    ):
        select_provider("cuda")


def test_no_note_when_the_build_has_no_cuda(monkeypatch):
    monkeypatch.setattr(providers, "available_providers", lambda: [CPU])
    monkeypatch.setattr(
        providers, "probe_provider", lambda name: ProbeResult(name, name == CPU, "not listed")
    )
    assert select_provider("auto").note == ""


def test_unknown_provider_name():
    with pytest.raises(ValueError, match="choices: auto, cuda, cpu"):
        select_provider("tpu")


def test_real_probe_keeps_native_noise_off_the_terminal(capfd):
    probe_provider.cache_clear()
    results = {name: probe_provider(name) for name in available_providers()}
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert results[CPU].works
    for result in results.values():
        if not result.works:
            assert result.reason and "\n" not in result.reason


def test_unlisted_provider_does_not_work():
    result = probe_provider("NoSuchExecutionProvider")
    assert not result.works and result.reason == "not in this onnxruntime build"


@pytest.mark.parametrize(
    ("native", "reason"),
    [
        (
            "\x1b[1;31m2026 [E:onnxruntime:Default, provider_bridge_ort.cc:2458] Failed to load library "
            "libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: "
            "No such file or directory\x1b[m\n[W:onnxruntime] Failed to create CUDAExecutionProvider. "
            "Require cuDNN 9.* and CUDA 13.*. Please install",
            "libcublasLt.so.13: cannot open shared object file: No such file or directory",
        ),
        (
            "[W:onnxruntime] Failed to create CUDAExecutionProvider. Require cuDNN 9.* and CUDA 12.*. More",
            "Require cuDNN 9.* and CUDA 12.*",
        ),
        ("", "the session fell back to the CPU"),
    ],
)
def test_reason_from_native_messages(native, reason):
    assert providers._reason(native) == reason
