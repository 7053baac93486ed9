"""A rollout engine that samples from a low-precision copy of the policy: a CPU emulation of the FP8-rollout /
BF16-trainer setting of AIS (arXiv 2605.13907), our construction rather than the paper's setup.

The trainer keeps its full-precision policy; the engine holds a copy whose ``nn.Linear`` weights are
quantized and re-quantized from the trainer's weights after every optimizer step (``sync_weights``).
Sampling and the returned ``rollout_logprobs`` both come from the copy, so the trainer sees the real
rollout/train mismatch that TIS, MIS and AIS correct (``rollwise.rlvr.correction``).

Formats (``fmt``):

- ``none``: an exact full-precision copy (the reference arm; the mismatch is only kernel noise).
- ``fp8_e4m3`` / ``fp8_e5m2``: weights rounded through ``torch.float8_e4m3fn`` / ``torch.float8_e5m2``
  with one scale per tensor, ``s = max|W| / fmax`` (vLLM online FP8 style), computed in fp32: an emulation
  that gives the FP8 mismatch, not FP8 speed. ``activations=True`` also rounds each Linear's input per
  token (W8A8 emulation).
- ``int8`` / ``int4`` / ``int3`` / ``int2``: per-output-channel symmetric fake quantization,
  ``s = max_row|W| / (2^(b-1) - 1)``.
- ``int8_dynamic``: real int8 kernels: ``torch.ao.quantization.quantize_dynamic`` (int8 weights per output
  channel, activations quantized on the fly). This is the fast mode on CPU.

``lm_head`` (tied to the embeddings in the tiny models), embeddings, norms and biases stay in full precision.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.config import ConfigError
from rollwise.rlvr.engines.hf import HFEngine

#: format -> (float8 dtype, largest finite value) for the FP8 emulations
FP8_FORMATS: dict[str, tuple[torch.dtype, float]] = {
    "fp8_e4m3": (torch.float8_e4m3fn, 448.0),
    "fp8_e5m2": (torch.float8_e5m2, 57344.0),
}
#: format -> bits for the per-channel integer fake quantization
INT_FORMATS: dict[str, int] = {"int8": 8, "int4": 4, "int3": 3, "int2": 2}
FORMATS = ("none", *FP8_FORMATS, *INT_FORMATS, "int8_dynamic")


def fake_quantize(w: Tensor, fmt: str) -> Tensor:
    """Round ``w`` (any shape, rows = output channels for 2-D weights) to ``fmt`` and back to its dtype.

    FP8: one scale per tensor, ``s = max|w| / fmax``; INT-b: one scale per row, ``s = max_row|w| / (2^(b-1)-1)``.
    ``none`` returns ``w`` unchanged. All-zero tensors/rows stay zero.
    """
    if fmt == "none":
        return w
    if fmt in FP8_FORMATS:
        dtype, fmax = FP8_FORMATS[fmt]
        scale = w.abs().amax().clamp_min(1e-12) / fmax
        return (w / scale).to(dtype).to(w.dtype) * scale
    if fmt in INT_FORMATS:
        qmax = 2 ** (INT_FORMATS[fmt] - 1) - 1
        amax = w.abs().amax(dim=-1, keepdim=True) if w.dim() > 1 else w.abs().amax()
        scale = amax.clamp_min(1e-12) / qmax
        return (w / scale).round().clamp(-qmax, qmax) * scale
    raise ConfigError(f"quantization format {fmt!r} is not known; valid choices: {', '.join(FORMATS)}")


def quantized_linear_names(model: nn.Module, skip: tuple[str, ...] = ("lm_head",)) -> list[str]:
    """Names of the ``nn.Linear`` modules that get quantized (all but those whose name ends with ``skip``)."""
    return [name for name, mod in model.named_modules()
            if isinstance(mod, nn.Linear) and not any(name.split(".")[-1] == s for s in skip)]


def _untie(model: nn.Module, names: list[str]) -> None:
    """Give each Linear in ``names`` whose weight is shared (a tied ``lm_head``) a weight of its own.

    Without this a tied head is skipped (parameters are de-duplicated by name) or, quantized in place, would
    quantize the input embeddings too. Only the engine's copy is untied; ``sync_weights`` reads the source
    weight through the module, so the trainer's tie is untouched.
    """
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    for name in names:
        mod = model.get_submodule(name)
        if seen.get(id(mod.weight), 0) > 1:
            mod.weight = nn.Parameter(mod.weight.detach().clone(), requires_grad=False)


def _quantize_int8_packed(weight: Tensor) -> Tensor:
    """Per-output-channel symmetric qint8 tensor of ``weight`` (out, in), as ``quantize_dynamic`` builds it."""
    scales = (weight.abs().amax(dim=1).clamp_min(1e-12) / 127.5).double()
    zeros = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.quantize_per_channel(weight.detach().float(), scales, zeros, 0, torch.qint8)


def _activation_hook(fmt: str):
    """Forward pre-hook that fake-quantizes a Linear's input with one scale per token (W8A8 emulation)."""
    dtype, fmax = FP8_FORMATS[fmt]

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / fmax
        return ((x / scale).to(dtype).to(x.dtype) * scale, *args[1:])

    return hook


class QuantizedEngine(HFEngine):
    """Samples from a quantized copy of ``policy``; log-probs are the copy's own (the behaviour
    policy mu of the correction's notation).

    Args:
        policy: the trainer's full-precision model (never modified).
        tokenizer: its tokenizer.
        fmt: one of ``FORMATS`` (see the module docstring).
        activations: also fake-quantize Linear inputs per token (FP8 formats only).
        skip: Linear module names (last component) kept in full precision.
        batch_size: sequences per ``generate`` call.
    """

    def __init__(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, fmt: str = "fp8_e4m3",
                 activations: bool = False, skip: tuple[str, ...] | list[str] = ("lm_head",),
                 batch_size: int = 512):
        if fmt not in FORMATS:
            raise ConfigError(f"rollout.engine_params.fmt={fmt!r} is not known; valid choices: {', '.join(FORMATS)}")
        if activations and fmt not in FP8_FORMATS:
            raise ConfigError(f"rollout.engine_params.activations=true needs an FP8 format, got fmt={fmt!r}")
        self.fmt = fmt
        self.activations = activations
        self.skip = tuple(skip)
        copy_ = copy.deepcopy(policy).eval().requires_grad_(False)
        self.linear_names = quantized_linear_names(copy_, self.skip)
        _untie(copy_, self.linear_names)
        if fmt == "int8_dynamic":
            copy_ = self._to_dynamic_int8(copy_)
        elif activations:
            for name in self.linear_names:
                copy_.get_submodule(name).register_forward_pre_hook(_activation_hook(fmt))
        super().__init__(copy_, tokenizer, batch_size=batch_size)
        self.sync_weights(policy)

    def _to_dynamic_int8(self, model: nn.Module) -> nn.Module:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = {name: per_channel_dynamic_qconfig for name in self.linear_names}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, spec, dtype=torch.qint8)

    @torch.no_grad()
    def sync_weights(self, policy: nn.Module) -> None:
        """Re-quantize the copy from ``policy`` in place (no re-allocation, no deepcopy).

        Quantized Linear weights get ``fake_quantize`` (or int8 re-packing for ``int8_dynamic``); every other
        parameter and buffer is copied as is.
        """
        src_modules = dict(policy.named_modules())
        quantized = set(self.linear_names)
        if self.fmt == "int8_dynamic":
            for name in self.linear_names:
                src = src_modules[name]
                bias = None if src.bias is None else src.bias.detach().clone()  # never share the trainer's tensor
                self.model.get_submodule(name).set_weight_bias(_quantize_int8_packed(src.weight), bias)
        for name, p in self.model.named_parameters():
            module_name, _, leaf = name.rpartition(".")
            src = getattr(src_modules[module_name], leaf).detach()  # by module: the copy may be untied
            p.copy_(fake_quantize(src, self.fmt) if module_name in quantized and leaf == "weight" else src)
        src_buffers = dict(policy.named_buffers())
        for name, b in self.model.named_buffers():
            if name in src_buffers:
                b.copy_(src_buffers[name])
