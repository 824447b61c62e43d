"""Inference linears: packed CPU kernels agree with nn.Linear and follow weight changes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kronos.linear import Linear, stock_kernels


@pytest.mark.parametrize("shape", [(1, 96), (1, 1, 96), (3, 96), (4, 17, 96), (300, 96)])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_matches_the_plain_product(shape, bias):
    torch.manual_seed(0)
    layer = Linear(96, 64, bias=bias)
    x = torch.randn(*shape)
    expected = F.linear(x, layer.weight, layer.bias)
    with torch.inference_mode():
        out = layer(x)
        with stock_kernels():
            stock = layer(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(stock, expected)


def test_packed_weights_follow_in_place_updates():
    torch.manual_seed(0)
    layer = Linear(32, 16)
    x = torch.randn(5, 32)
    with torch.inference_mode():
        before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(2)
        layer.bias.add_(1)
    with torch.inference_mode():
        after = layer(x)
    torch.testing.assert_close(after, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before, after)


def test_training_keeps_autograd():
    layer = Linear(8, 4)
    layer(torch.randn(3, 8)).sum().backward()
    assert layer.weight.grad is not None
