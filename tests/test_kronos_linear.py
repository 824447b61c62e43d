"""Fast-path products: packed CPU kernels agree with nn.Linear; fast forms follow weight changes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kronos.fast import FastKronos, fast_path
from kronos.linear import PackedLinear


@pytest.mark.parametrize("shape", [(1, 96), (1, 1, 96), (3, 96), (4, 17, 96), (300, 96)])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_matches_the_plain_product(shape, bias):
    torch.manual_seed(0)
    layer = nn.Linear(96, 64, bias=bias)
    x = torch.randn(*shape)
    expected = F.linear(x, layer.weight, layer.bias)
    with torch.inference_mode():
        out = PackedLinear.of(layer)(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_fused_products_split_back_into_the_layers():
    torch.manual_seed(0)
    a, b = nn.Linear(32, 16), nn.Linear(32, 8)
    x = torch.randn(5, 32)
    with torch.inference_mode():
        out = PackedLinear.of(a, b)(x)
    torch.testing.assert_close(out[:, :16], a(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, 16:], b(x), rtol=1e-5, atol=1e-5)


def test_fast_path_follows_in_place_weight_updates(mini_pair):
    _, model = mini_pair
    model = type(model)(model.config).eval()
    with torch.inference_mode():
        first = fast_path(model, FastKronos, torch.float32)
        assert fast_path(model, FastKronos, torch.float32) is first, "built once per set of weights"
    with torch.no_grad():
        model.head.proj_s1.weight.mul_(2)
    with torch.inference_mode():
        rebuilt = fast_path(model, FastKronos, torch.float32)
        h = torch.randn(3, model.d_model)
        assert rebuilt is not first
        torch.testing.assert_close(rebuilt.s1_logits(h), model.head(h), rtol=1e-5, atol=1e-4)
