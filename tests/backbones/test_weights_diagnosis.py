"""What a refused weights file is, said truthfully and whole (issues 22.9 and 18.3).

Random bytes are unreadable, not "Python objects that would run code": only a pickle that names a
global is code. torch's refusal opens with paragraphs of advice that wrap mid-sentence; no message
quotes them ("… if you got the file )"). And ``femb.backbones.registry`` no longer imports
``femb.backbones.weights`` (which builds networks through the registry): no import cycle.
"""

import ast
import os
from pathlib import Path

import pytest
import torch

from femb.backbones import build_backbone
from femb.backbones.weights import WeightsError
from femb.checkpoint import CheckpointError, load_checkpoint


class RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_random_bytes_are_unreadable_not_code(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError) as info:
        build_backbone("iresnet_tiny", embed_dim=16, weights=path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable PyTorch weights file (")
    assert "would run code" not in message and "got the file" not in message and message.endswith(")")


def test_a_pickle_naming_a_global_is_still_refused_as_code(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"w": torch.zeros(1), "x": RunsCode()}, path)
    with pytest.raises(WeightsError, match=r"would run code .*posix.getcwd|would run code .*getcwd") as info:
        build_backbone("iresnet_tiny", embed_dim=16, weights=path)
    assert "got the file" not in str(info.value)


def test_checkpoint_messages_end_in_a_whole_sentence(tmp_path):
    code = tmp_path / "code.pt"
    torch.save({"format": "femb.checkpoint", "x": RunsCode()}, code)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(code)
    assert "would run code" in str(info.value) and "getcwd" in str(info.value)
    assert "got the file" not in str(info.value)
    corrupt = tmp_path / "corrupt.pt"
    data = bytearray(code.read_bytes())
    start = data.index(b"data.pkl") + 40  # inside the pickle stream of the zip archive
    data[start : start + 16] = os.urandom(16)
    corrupt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(corrupt)
    assert "got the file" not in str(info.value) and str(info.value).endswith(")")


def imported_modules(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    return {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)  # function-level imports too: a lazy import is still a cycle
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }


def test_the_registry_and_the_weights_module_import_one_way():
    import femb.backbones.registry as registry
    import femb.backbones.weights as weights

    assert "femb.backbones.registry" in imported_modules(weights)
    assert not {name for name in imported_modules(registry) if name and name.startswith("femb.")}
