"""`femb info`: versions, devices, the onnxruntime providers that really work, and what is registered."""

from __future__ import annotations

import json
import platform
from typing import Annotated, Any

import typer


def info_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the same facts as JSON.")] = False,
) -> None:
    """Show femb, torch, numpy and onnxruntime versions, CUDA devices, providers, backbones and heads."""
    facts = collect_info()
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    versions = facts["versions"]
    typer.echo(f"femb         {versions['femb']}")
    typer.echo(f"python       {versions['python']}")
    for name in ("torch", "numpy", "onnx", "onnxruntime"):
        typer.echo(f"{name:<12} {versions.get(name) or 'not installed'}")
    cuda = facts["cuda"]
    if cuda["available"]:
        typer.echo(f"CUDA         available (torch CUDA {cuda['version']}): {len(cuda['devices'])} device(s)")
        for index, name in enumerate(cuda["devices"]):
            typer.echo(f"  cuda:{index}     {name}")
    else:
        built = f"torch built with CUDA {cuda['version']}" if cuda["version"] else "CPU-only torch build"
        typer.echo(f"CUDA         not available ({built})")
    ort = facts["onnxruntime"]
    typer.echo(f"onnxruntime providers listed:  {', '.join(ort['listed']) or 'none'}")
    typer.echo(f"onnxruntime providers working: {', '.join(ort['working']) or 'none'}")
    for provider, reason in ort["unavailable"].items():
        typer.echo(f"  {provider}: unavailable ({reason})")
    typer.echo(f"backbones    {', '.join(facts['backbones'])}")
    typer.echo(f"headers      {', '.join(facts['headers']) or 'none registered'}")
    if facts["head_options"]:
        typer.echo("head options (femb train --head NAME --head-opt KEY=VALUE):")
    for head, options in facts["head_options"].items():
        typer.echo(f"  {head}")
        for option in options:
            typer.echo(f"    {option['describe']}")


def collect_info() -> dict[str, Any]:
    import numpy
    import torch

    import femb
    from femb.backbones import list_backbones

    versions: dict[str, str | None] = {
        "femb": femb.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
    }
    cuda_available = torch.cuda.is_available()
    devices = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda_available else []
    )
    facts: dict[str, Any] = {
        "versions": versions,
        "cuda": {"available": cuda_available, "version": torch.version.cuda, "devices": devices},
        "onnxruntime": {"listed": [], "working": [], "unavailable": {}},
        "backbones": list_backbones(),
        "headers": _headers(),
        "head_options": _head_options(),
    }
    if versions["onnxruntime"]:
        from femb.inference.providers import available_providers, probe_provider

        listed = available_providers()
        probes = [probe_provider(provider) for provider in listed]
        facts["onnxruntime"] = {
            "listed": listed,
            "working": [p.provider for p in probes if p.works],
            "unavailable": {p.provider: p.reason for p in probes if not p.works},
        }
    return facts


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _headers() -> list[str]:
    try:
        from femb.headers import list_headers
    except ImportError:  # the heads package is optional for inference-only installs
        return []
    return list_headers()


def _head_options() -> dict[str, list[dict[str, Any]]]:
    """Every head's declared options: name, type, default, help, allowed range, one-line form."""
    try:
        from femb.headers import head_options, list_headers
    except ImportError:
        return {}
    return {
        head: [
            {
                "name": option.name,
                "type": option.type.__name__,
                "default": option.default,
                "help": option.help,
                "range": option.range_text(),
                "describe": option.describe(),
            }
            for option in head_options(head)
        ]
        for head in list_headers()
    }
