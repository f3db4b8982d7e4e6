"""benchmarks/bench_onnx_inference.py, the inference table: every runtime in one run, the CPU's flags."""

from __future__ import annotations

import sys


def test_inference_table_has_every_runtime_and_the_cpu_flags(benchmark, monkeypatch, capsys):
    bench = benchmark("bench_onnx_inference")
    args = ["--backbones", "iresnet_tiny", "--embed-dim", "16", "--batches", "2", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", ["bench", *args, "--repeats", "1", "--calibration-images", "8"])
    bench.main()
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "avx512_vnni" in out.splitlines()[0]  # named, present or lacking
    rows = [line for line in out.splitlines() if line.startswith("iresnet_tiny ")]
    runtimes = {row.split()[3] + " " + row.split()[4] for row in rows}
    assert {"PyTorch eager", "ONNX fp32", "ONNX int8"} <= runtimes
    assert all(row.rstrip().endswith("×") for row in rows)
    assert "ONNX fp32         " in out and "1.00×" in out
