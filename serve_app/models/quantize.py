"""Dynamic int8 linear layers for ``HFEngine`` on CPU (``model.quantization: int8``).

Each ``nn.Linear`` of the base model except the output head is replaced by ``Int8Linear``: its weight
quantized per output channel to int8 once, activations quantized per call (torch's dynamic quantized
linear, fbgemm). Decoding a small model on CPU is bound by reading weights, so a quarter of the bytes is
most of the gain. ``Int8Linear`` still *is* an ``nn.Linear`` with the original feature sizes, so peft wraps
it with LoRA layers like any other: the adapters stay in full precision and run beside it. The quantized
module is held outside the state dict, so loading an adapter's weights never looks for its keys.

torch marks its eager-mode quantization deprecated in favour of torchao (not a dependency here); its
warnings are silenced where the layers are built, and a torch without it fails loudly at start.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

#: Left in full precision: the output head turns hidden states into the token choice itself.
KEEP_FULL_PRECISION = ("lm_head",)


class Int8Linear(torch.nn.Linear):
    def __init__(self, linear: torch.nn.Linear):
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated", category=Warning)
            quantized = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(linear),
                {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
                dtype=torch.qint8,
            )[0]
        object.__setattr__(self, "quantized", quantized)  # not a submodule: out of the state dict
        # An empty weight of the original dtype: what peft reads to place and type the LoRA weights.
        self.weight = torch.nn.Parameter(torch.empty(0, dtype=linear.weight.dtype), requires_grad=False)
        self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantized(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel"


def quantize_linear_layers(model: Any) -> int:
    """Replace the model's plain ``nn.Linear`` layers (not ``KEEP_FULL_PRECISION``) in place; return how many."""
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear and name not in KEEP_FULL_PRECISION:
                setattr(module, name, Int8Linear(child))
                replaced += 1
    return replaced
