"""Linear layers for inference on CPU.

torch's default CPU GEMM (MKL) is well below this hardware's peak for the shapes of Kronos,
and poor for the few-row products of decoding. oneDNN with a pre-packed (blocked) weight
is faster at every row count we use; a single row is a matrix-vector product bound by
memory bandwidth, which runs fastest as one block of output rows per thread. Training and
autograd keep the plain `nn.Linear` path; results agree to float rounding.
"""
from __future__ import annotations

import contextlib
import contextvars
import weakref

import torch
import torch.nn.functional as F
from torch import nn

PACKING_ROWS = 64  # oneDNN picks its blocked weight layout for any expected batch above 1


class PackedLinear:
    """Inference-only `x @ W.T + b` over a fixed weight, laid out for the CPU."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias, self.packed, self.blocks, self.block_bias = weight, bias, None, None, None
        if weight.device.type != "cpu" or weight.dtype != torch.float32:
            return
        threads = torch.get_num_threads()
        if threads > 1 and weight.shape[0] % threads == 0:
            self.blocks = weight.reshape(threads, weight.shape[0] // threads, weight.shape[1])
            self.block_bias = None if bias is None else bias.reshape(threads, -1, 1)
        if torch.backends.mkldnn.is_available():
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKING_ROWS)
                self(torch.zeros(2, weight.shape[1]))  # fail here, not mid-generation
            except (RuntimeError, AttributeError):
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype or x.device != self.weight.device:
            return F.linear(x, self.weight, self.bias)
        if self.blocks is not None and x.numel() == x.shape[-1]:  # one row
            xt = x.reshape(1, -1).t().expand(self.blocks.shape[0], -1, 1)
            out = torch.bmm(self.blocks, xt) if self.block_bias is None else \
                torch.baddbmm(self.block_bias, self.blocks, xt)
            return out.reshape(*x.shape[:-1], -1)
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


_PACKED: "weakref.WeakKeyDictionary[nn.Linear, tuple]" = weakref.WeakKeyDictionary()
_STOCK = contextvars.ContextVar("kronos_stock_kernels", default=False)


@contextlib.contextmanager
def stock_kernels():
    """Run `Linear` layers through torch's default kernels, as the published Kronos code
    does: benchmarks time the published algorithm this way, as its users run it."""
    token = _STOCK.set(True)
    try:
        yield
    finally:
        _STOCK.reset(token)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters and state-dict names) whose calls without autograd run
    through a `PackedLinear`, rebuilt whenever the weights change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or _STOCK.get():
            return super().forward(x)
        return packed(self)(x)


def packed(layer: nn.Linear) -> PackedLinear:
    """The packed form of `layer`'s current weights (cached per layer)."""
    params = [p for p in (layer.weight, layer.bias) if p is not None]
    key = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
    cached = _PACKED.get(layer)
    if cached is None or cached[0] != key:
        bias = None if layer.bias is None else layer.bias.detach()
        cached = (key, PackedLinear(layer.weight.detach(), bias))
        _PACKED[layer] = cached
    return cached[1]
