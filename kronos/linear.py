"""Packed linear products for the fast inference path on CPU.

torch's default CPU GEMM (MKL) is well below this hardware's peak for the shapes of Kronos,
and poor for the few-row products of decoding. oneDNN with a pre-packed (blocked) weight
is faster at every row count we use; a single row is a matrix-vector product bound by
memory bandwidth, which runs fastest as one block of output rows per thread. Results agree
with `nn.Linear` to float rounding, which is why the tokenizer's *encoding* never runs here
(see `kronos.fast`). On other devices the product is torch's own `F.linear`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PACKING_ROWS = 64  # oneDNN picks its blocked weight layout for any expected batch above 1
PACKABLE = (torch.float32, torch.bfloat16)


class PackedLinear:
    """Inference-only `x @ W.T + b` over a fixed weight, laid out for the CPU."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias, self.packed, self.blocks, self.block_bias = weight, bias, None, None, None
        if weight.device.type != "cpu" or weight.dtype not in PACKABLE:
            return
        threads = torch.get_num_threads()
        if threads > 1 and weight.shape[0] % threads == 0:
            self.blocks = weight.reshape(threads, weight.shape[0] // threads, weight.shape[1])
            self.block_bias = None if bias is None else bias.reshape(threads, -1, 1)
        if torch.backends.mkldnn.is_available():
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKING_ROWS)
                self(torch.zeros(2, weight.shape[1], dtype=weight.dtype))  # fail here, not mid-generation
            except (RuntimeError, AttributeError):
                self.packed = None

    @classmethod
    def of(cls, *layers: torch.nn.Linear, dtype: torch.dtype | None = None,
           rows: tuple[torch.Tensor | None, ...] | None = None) -> PackedLinear:
        """One product over the concatenated outputs of `layers` (e.g. q, k and v), each
        layer's outputs in the order `rows` gives for it (None: as they are)."""
        order = rows or (None,) * len(layers)

        def take(t: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
            return t.detach() if index is None else t.detach()[index]

        weight = torch.cat([take(layer.weight, i) for layer, i in zip(layers, order)])
        bias = None if layers[0].bias is None else torch.cat([take(layer.bias, i) for layer, i in zip(layers, order)])
        if dtype is not None:
            weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
        return cls(weight.contiguous(), bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The product in the weight's dtype, returned in x's (bf16 products on float32
        activations: only the products' inputs and results are rounded to bfloat16)."""
        if x.dtype == self.weight.dtype:
            return self._product(x)
        return self._product(x.to(self.weight.dtype)).to(x.dtype)

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        if x.device != self.weight.device:
            return F.linear(x, self.weight, self.bias)
        if self.blocks is not None and x.numel() == x.shape[-1]:  # one row
            xt = x.reshape(1, -1).t().expand(self.blocks.shape[0], -1, 1)
            out = torch.bmm(self.blocks, xt) if self.block_bias is None else \
                torch.baddbmm(self.block_bias, self.blocks, xt)
            return out.reshape(*x.shape[:-1], -1)
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
