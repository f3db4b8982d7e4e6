"""Float32 maths under autocast, finite losses and gradients at cosθ = ±1, unit centres kept in place."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from header_helpers import ALL_HEADERS, MARGIN_HEADERS, TOLERANCES

from femb.headers import build_header

D, C = 8, 5


def total_loss(header, embeddings, labels):
    loss = F.cross_entropy(header(embeddings, labels), labels, ignore_index=-1)
    extra = header.extra_loss(embeddings)
    return loss if extra is None else loss + extra


def basis_header(name: str) -> torch.nn.Module:
    """Centres on the coordinate axes: exactly unit in every dtype, so cosθ is exactly ±1 below."""
    header = build_header(name, D, C)
    with torch.no_grad():
        header.weight.copy_(torch.eye(C, D).repeat_interleave(header.centres_per_class, dim=0))
    return header


@pytest.mark.parametrize("name", ALL_HEADERS)
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["cos=+1", "cos=-1"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_finite_loss_and_gradients_at_cos_plus_minus_one(name, sign, autocast):
    header = basis_header(name).train()
    labels = torch.tensor([0, 1, 2, 3])
    x = (sign * 20.0 * torch.eye(C, D)[labels]).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        embeddings = x.to(torch.bfloat16) if autocast else x
        logits = header(embeddings, labels)
        loss = total_loss(header, embeddings, labels)
    assert logits.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(header.weight.grad).all()


@pytest.mark.parametrize("name", ALL_HEADERS)
def test_autocast_computes_in_float32(name):
    header = build_header(name, D, C).eval()
    x, labels = 15.0 * torch.randn(6, D), torch.tensor([0, 1, 2, 3, 4, -1])
    rounded = x.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = header(rounded, labels)
    assert under_autocast.dtype == torch.float32
    # The only bf16 error is the rounding of the embeddings: the maths after it is float32.
    torch.testing.assert_close(under_autocast, header(rounded.float(), labels), **TOLERANCES[torch.float32])
    torch.testing.assert_close(under_autocast, header(x, labels), **TOLERANCES[torch.bfloat16])


@pytest.mark.parametrize("name", ALL_HEADERS)
def test_every_parameter_gets_a_gradient(name):
    kwargs = {"bias": True} if name == "linear" else {}
    header = build_header(name, D, C, **kwargs).train()
    x = (15.0 * torch.randn(6, D)).requires_grad_()
    total_loss(header, x, torch.tensor([0, 1, 2, 3, 4, 0])).backward()
    for parameter_name, parameter in header.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name
    assert x.grad.abs().sum() > 0


def non_unit_pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same head twice with the same non-unit weight: in-place renormalised, and through autograd."""
    in_place = build_header(name, D, C).train()
    reference = build_header(name, D, C, normalize_weight_in_place=False).train()
    rows = in_place.weight.shape[0]
    weight = torch.randn(rows, D) * torch.linspace(0.1, 5.0, rows).unsqueeze(1)
    with torch.no_grad():
        in_place.weight.copy_(weight)
        reference.weight.copy_(weight)
    return in_place, reference


@pytest.mark.parametrize("name", MARGIN_HEADERS)
def test_in_place_renormalisation_matches_autograd_normalisation(name):
    in_place, reference = non_unit_pair(name)
    original = reference.weight.detach().clone()
    x, labels = 15.0 * torch.randn(6, D), torch.tensor([0, 1, 2, 3, 4, -1])
    x_in_place, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()

    # Both draw the same random numbers (ElasticFace) and update the same statistics (AdaFace, ...).
    torch.manual_seed(1)
    logits = in_place(x_in_place, labels)
    norms = torch.linalg.vector_norm(in_place.weight.detach(), dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-6)
    torch.manual_seed(1)
    reference_logits = reference(x_reference, labels)
    assert torch.equal(logits, reference_logits)
    assert torch.equal(reference.weight.detach(), original)  # the reference never writes its weight

    torch.manual_seed(2)
    total_loss(in_place, x_in_place, labels).backward()
    torch.manual_seed(2)
    total_loss(reference, x_reference, labels).backward()
    # Exactly equal: the in-place centres are the very values F.normalize gives the reference.
    assert torch.equal(x_in_place.grad, x_reference.grad)
    # The weight gradients differ by what the normalisation's backward does to them: dividing by
    # ‖W_j‖ and removing the radial component (which the next renormalisation removes instead).
    unit = F.normalize(original, dim=1)
    grad = in_place.weight.grad
    tangential = grad - (grad * unit).sum(1, keepdim=True) * unit
    torch.testing.assert_close(
        tangential / original.norm(dim=1, keepdim=True), reference.weight.grad, rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("name", MARGIN_HEADERS)
def test_weight_renormalised_after_an_optimizer_step_and_a_load(name):
    header = build_header(name, D, C).train()
    optimizer = torch.optim.SGD(header.parameters(), lr=10.0)
    x, labels = 15.0 * torch.randn(6, D), torch.tensor([0, 1, 2, 3, 4, 0])
    total_loss(header, x, labels).backward()
    optimizer.step()
    rows = header.weight.shape[0]
    assert not torch.allclose(header.weight.detach().norm(dim=1), torch.ones(rows), atol=1e-3)
    header(x, labels)
    torch.testing.assert_close(header.weight.detach().norm(dim=1), torch.ones(rows), rtol=0, atol=1e-6)

    header.load_state_dict({**header.state_dict(), "weight": 3.0 * torch.randn(rows, D)})
    header(x, labels)
    torch.testing.assert_close(header.weight.detach().norm(dim=1), torch.ones(rows), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MARGIN_HEADERS)
def test_non_normalised_state_dict_gives_the_normalised_logits(name):
    loaded, unit = build_header(name, D, C).eval(), build_header(name, D, C).eval()
    weight = 3.0 * torch.randn(loaded.weight.shape)
    loaded.load_state_dict({**loaded.state_dict(), "weight": weight})
    unit.load_state_dict({**unit.state_dict(), "weight": F.normalize(weight, dim=1)})
    x, labels = 15.0 * torch.randn(6, D), torch.tensor([0, 1, 2, 3, 4, -1])
    with torch.no_grad():
        eval_logits = loaded(x, labels)
        assert torch.equal(loaded.weight, weight)  # eval mode never writes the weight
        torch.testing.assert_close(eval_logits, unit(x, labels), **TOLERANCES[torch.float32])
        # In training mode (where heads draw margins or update statistics), the same seed and state.
        torch.manual_seed(3)
        trained = loaded.train()(x, labels)
        torch.manual_seed(3)
        torch.testing.assert_close(trained, unit.train()(x, labels), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("name", MARGIN_HEADERS)
def test_two_forwards_before_one_backward(name):
    # Gradient accumulation over two forwards: the second must not rewrite the saved weight.
    header = build_header(name, D, C).train()
    with torch.no_grad():
        header.weight.mul_(3.0)
    x, labels = 15.0 * torch.randn(6, D), torch.tensor([0, 1, 2, 3, 4, 0])
    (total_loss(header, x, labels) + total_loss(header, x, labels)).backward()
    assert torch.isfinite(header.weight.grad).all()


@pytest.mark.parametrize("name", MARGIN_HEADERS)
def test_zero_embedding_is_finite(name):
    header = build_header(name, D, C).train()
    x = torch.zeros(2, D, requires_grad=True)
    total_loss(header, x, torch.tensor([0, 1])).backward()
    assert torch.isfinite(x.grad).all()
