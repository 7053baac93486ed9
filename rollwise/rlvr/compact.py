"""A compact forward pass for Llama / Qwen2 decoders, over the Hugging Face model's own parameter tensors.

``transformers``' forward is general (cache classes, mask builders, attention back-ends, hooks); for the small
models an RL step trains on CPU its per-call overhead is a large share of the work. :class:`CompactLM` runs the
same computation with fewer, larger operations and no copy of the weights:

- RMSNorm through ``F.rms_norm``; RoPE tables computed once per length and indexed by position;
- Q/K/V and gate/up projections fused into one matrix product each (the fused weights are cached while the
  parameters do not change, and re-concatenated, differentiably, under autograd);
- ``F.scaled_dot_product_attention`` with one boolean mask per call, and explicit grouped-head products for
  one-query decode steps (:meth:`CompactLM.attention`);
- **shared prompts**: rows that repeat the same prompt (the n rollouts of one prompt) run the prompt once;
  their responses attend to that prompt's keys and values, gathered per row. Gradients flow back through
  the gather, so the result equals the per-row computation (up to float rounding). Batches without repeats
  run prompt and response in one pass.

It reads the parameters of ``model`` at every call, so an optimizer step, ``load_state_dict`` or FSDP's
gathered replica is seen at once. Logits equal ``model(...)``'s to about 1e-5 (tests/rlvr/test_compact.py).
Unsupported configurations (other model types, non-default RoPE, sliding windows, non-SiLU MLPs, MLP biases,
attention dropout, FSDP2-sharded parameters) are reported
by :func:`compact_support` and the callers fall back to the Hugging Face forward.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SUPPORTED_TYPES = ("qwen2", "llama")


def compact_support(model: nn.Module) -> str | None:
    """None when :class:`CompactLM` can run ``model``; otherwise the reason it cannot (one line)."""
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype not in SUPPORTED_TYPES:
        return f"model_type {mtype!r} (compact forward supports {', '.join(SUPPORTED_TYPES)})"
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope != "default":
        return f"rope_type {rope!r} (only default RoPE)"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} (only silu)"
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return "pretraining_tp != 1"
    if getattr(cfg, "mlp_bias", False):
        return "MLP biases"
    if getattr(cfg, "attention_dropout", 0.0):
        return "attention dropout"
    if not hasattr(model, "model") or not hasattr(model.model, "layers"):
        return "no model.layers"
    if _sharded(model):
        return "sharded (FSDP2) parameters: its forward hooks gather them"
    return None


def _sharded(model: nn.Module) -> bool:
    """True when ``model``'s parameters are DTensors (FSDP2's ``fully_shard``)."""
    first = next(model.parameters(), None)
    return first is not None and type(first).__name__ == "DTensor"


@dataclass
class PromptCache:
    """Keys and values of a batch of prompts (one entry per layer) and the last prompt position's hidden state.

    keys / values: L tensors (G, H_kv, P, D); key_valid (G, P) bool; last_hidden (G, d) before the final norm;
    lengths (G,) real prompt tokens per row.
    """

    keys: list[Tensor]
    values: list[Tensor]
    key_valid: Tensor
    last_hidden: Tensor
    lengths: Tensor


class CompactLM:
    """The decoder computation of a Llama/Qwen2 ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module):
        reason = compact_support(model)
        if reason is not None:
            raise ValueError(f"compact forward cannot run this model: {reason}")
        self._model = weakref.ref(model)  # the cache below must not keep a model alive
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        theta = cfg.rope_parameters["rope_theta"]
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim))
        self._cos = self._sin = torch.empty(0)
        self._fused: list[tuple[Tensor, Tensor | None, Tensor]] | None = None
        self._fused_version: tuple[tuple[int, int], ...] = ()

    @property
    def model(self) -> nn.Module:
        model = self._model()
        if model is None:
            raise RuntimeError("CompactLM: its model no longer exists")
        return model

    # ------------------------------------------------------------------------------------------ weights
    def layer_weights(self) -> list[tuple[Tensor, Tensor | None, Tensor]]:
        """Per layer: fused QKV weight ((H+2H_kv)D, d), its bias or None, fused gate/up weight (2I, d).

        Without autograd the concatenations are cached until a parameter changes (tensor versions);
        with autograd they are rebuilt every call so that gradients reach the original parameters.
        """
        layers = self.model.model.layers
        params = list(self.model.parameters())
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return [self._fuse(layer) for layer in layers]
        version = tuple((id(p), p._version) for p in params)
        if self._fused is None or version != self._fused_version:
            with torch.no_grad():
                self._fused = [self._fuse(layer) for layer in layers]
            self._fused_version = version
        return self._fused

    @staticmethod
    def _fuse(layer: nn.Module) -> tuple[Tensor, Tensor | None, Tensor]:
        a, m = layer.self_attn, layer.mlp
        w_qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        b_qkv = None if a.q_proj.bias is None else torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
        w_gu = torch.cat([m.gate_proj.weight, m.up_proj.weight])
        return w_qkv, b_qkv, w_gu

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin (..., D) at ``positions`` from tables computed once (the HF formula, float32)."""
        need = int(positions.max()) + 1 if positions.numel() else 1
        if self._cos.shape[0] < need:
            n = max(need, 2 * self._cos.shape[0], 64)
            freqs = torch.arange(n, dtype=torch.float)[:, None] * self.inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            self._cos, self._sin = emb.cos(), emb.sin()
        dtype = self.model.model.embed_tokens.weight.dtype
        return self._cos[positions].to(dtype), self._sin[positions].to(dtype)

    # ------------------------------------------------------------------------------------------ blocks
    def project_qkv(self, layer: nn.Module, w: tuple[Tensor, Tensor | None, Tensor], x: Tensor, cos: Tensor,
             sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, S, d) -> q (B, H, S, D), k and v (B, H_kv, S, D), RoPE applied to q and k."""
        b, s, _ = x.shape
        h = F.rms_norm(x, (x.shape[-1],), layer.input_layernorm.weight, self.eps)
        qkv = F.linear(h, w[0], w[1]).view(b, s, self.n_heads + 2 * self.n_kv, self.head_dim).transpose(1, 2)
        qk, v = qkv.split([self.n_heads + self.n_kv, self.n_kv], dim=1)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, S, D)
        half = self.head_dim // 2
        rotated = torch.cat((-qk[..., half:], qk[..., :half]), dim=-1)
        qk = qk * cos + rotated * sin
        q, k = qk.split([self.n_heads, self.n_kv], dim=1)
        return q, k, v

    def attend_mlp(self, layer: nn.Module, w: tuple[Tensor, Tensor | None, Tensor], x: Tensor, q: Tensor,
                k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Attention over (k, v) with boolean ``mask`` (B, 1, S_q, S_k), output projection, MLP; residuals."""
        attn = self.attention(q, k, v, mask)
        b, _, s, _ = q.shape
        x = x + F.linear(attn.transpose(1, 2).reshape(b, s, -1), layer.self_attn.o_proj.weight,
                         layer.self_attn.o_proj.bias)
        h = F.rms_norm(x, (x.shape[-1],), layer.post_attention_layernorm.weight, self.eps)
        gate, up = F.linear(h, w[2]).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, layer.mlp.down_proj.weight)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Softmax attention of q (B, H, S_q, D) over k, v (B, H_kv, S_k, D) with boolean ``mask`` (B, 1, S_q, S_k).

        One query per row (a decode step): explicit products with the query heads grouped per key head (about
        2x faster than SDPA's kernel at these sizes); otherwise ``F.scaled_dot_product_attention``.
        """
        if q.shape[2] != 1:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.n_kv != self.n_heads)
        b, h, _, d = q.shape
        grouped = q.view(b, self.n_kv, h // self.n_kv, d)  # (B, H_kv, H/H_kv, D)
        scores = (grouped @ k.transpose(-1, -2)) * d**-0.5  # (B, H_kv, H/H_kv, S_k)
        scores = scores.masked_fill(~mask.view(b, 1, 1, -1), float("-inf"))
        return (torch.softmax(scores, dim=-1) @ v).view(b, h, 1, d)

    def logits(self, hidden: Tensor) -> Tensor:
        """Final norm and LM head: (..., d) -> (..., V)."""
        m = self.model
        h = F.rms_norm(hidden, (hidden.shape[-1],), m.model.norm.weight, self.eps)
        return F.linear(h, m.lm_head.weight, getattr(m.lm_head, "bias", None))

    # ------------------------------------------------------------------------------------------ passes
    def prefill(self, prompt_ids: Tensor, prompt_mask: Tensor) -> PromptCache:
        """Run left-padded prompts (G, P) once; keep every layer's keys and values."""
        x, keys, values = self.hidden(prompt_ids, prompt_mask, keep_from=prompt_ids.shape[1] - 1)
        return PromptCache(keys, values, prompt_mask.bool(), x[:, -1], prompt_mask.long().sum(-1))

    def hidden(self, ids: Tensor, mask: Tensor, keep_from: int = 0) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Hidden states (B, S - keep_from, d) of positions ``keep_from..S-1`` of left-padded sequences ``ids``
        (B, S), and every layer's keys and values (B, H_kv, S, D).

        ``mask`` (B, S) marks real tokens (zeros only on the left); a pad query sees only itself (unused output).
        Every layer's keys and values cover all S positions, but no later layer reads the last layer's output, so
        its attention, output projection and MLP run for the kept positions alone (the same values, less work).
        """
        valid = mask.bool()
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = self.rope(positions)
        s = ids.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool).tril()
        attn_mask = ((causal & valid[:, None, :]) | torch.eye(s, dtype=torch.bool)).unsqueeze(1)
        x = self.model.model.embed_tokens(ids)
        keys, values = [], []
        layers = list(zip(self.model.model.layers, self.layer_weights()))
        for i, (layer, w) in enumerate(layers):
            q, k, v = self.project_qkv(layer, w, x, cos, sin)
            keys.append(k)
            values.append(v)
            if i == len(layers) - 1 and keep_from > 0:  # later layers would need every position's output
                x, q, attn_mask = x[:, keep_from:], q[:, :, keep_from:], attn_mask[:, :, keep_from:]
            x = self.attend_mlp(layer, w, x, q, k, v, attn_mask)
        return x, keys, values

    def continuation_hidden(self, cache: PromptCache, rows: Tensor, tokens: Tensor) -> Tensor:
        """Hidden states (B, T, d) of ``tokens`` (B, T) appended to prompt ``rows[b]`` of ``cache``.

        Causal within the continuation; every continuation token sees its prompt's real tokens. Rows are picked
        with ``index_select``, whose backward (``index_add_``) sums repeated rows in a fixed order; ``x[rows]``
        would backpropagate through ``index_put_(accumulate=True)``, which on CPU with several threads adds
        with atomics in an order that changes from run to run.
        """
        b, t = tokens.shape
        positions = cache.lengths[rows, None] + torch.arange(t)
        cos, sin = self.rope(positions)
        prompt_part = cache.key_valid[rows][:, None, :].expand(b, t, -1)
        mask = torch.cat([prompt_part, torch.ones(t, t, dtype=torch.bool).tril().expand(b, t, t)], dim=-1)
        mask = mask.unsqueeze(1)
        x = self.model.model.embed_tokens(tokens)
        for i, (layer, w) in enumerate(zip(self.model.model.layers, self.layer_weights())):
            q, k, v = self.project_qkv(layer, w, x, cos, sin)
            k = torch.cat([cache.keys[i].index_select(0, rows), k], dim=2)
            v = torch.cat([cache.values[i].index_select(0, rows), v], dim=2)
            x = self.attend_mlp(layer, w, x, q, k, v, mask)
        return x

    def response_logits(self, prompt_ids: Tensor, prompt_mask: Tensor, response_ids: Tensor) -> Tensor:
        """Logits (B, T, V) that predict ``response_ids`` (B, T) after each row's prompt (B, P), left-padded.

        When rows repeat prompts (the n rollouts of a prompt) each distinct prompt is run once (``torch.unique``
        over ids and mask); otherwise prompt and response run in one pass. Column t predicts token t.
        """
        prompt_ids, prompt_mask = _trim_left(prompt_ids, prompt_mask)
        key = torch.cat([prompt_ids, prompt_mask.long()], dim=1)
        uniq, rows = torch.unique(key, dim=0, return_inverse=True)
        p, t = prompt_ids.shape[1], response_ids.shape[1]
        if 2 * uniq.shape[0] > prompt_ids.shape[0]:  # few repeats (an SFT batch): one pass over whole sequences
            ids = torch.cat([prompt_ids, response_ids[:, :-1]], dim=1)
            mask = torch.cat([prompt_mask, torch.ones_like(response_ids[:, :-1], dtype=prompt_mask.dtype)], dim=1)
            return self.logits(self.hidden(ids, mask, keep_from=p - 1)[0][:, :t])
        cache = self.prefill(uniq[:, :p], uniq[:, p:])
        first = cache.last_hidden.index_select(0, rows).unsqueeze(1)  # predicts response token 0
        if response_ids.shape[1] > 1:
            rest = self.continuation_hidden(cache, rows, response_ids[:, :-1])
            first = torch.cat([first, rest], dim=1)
        return self.logits(first)


def _trim_left(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop leading columns that are padding in every row (left-padded prompts after row selection)."""
    real = mask.bool().any(0)
    start = int(real.long().argmax()) if bool(real.any()) else ids.shape[1] - 1
    return ids[:, start:], mask[:, start:]


_COMPACT: weakref.WeakKeyDictionary[nn.Module, CompactLM] = weakref.WeakKeyDictionary()


def compact_for(model: nn.Module) -> CompactLM | None:
    """The (cached) :class:`CompactLM` of ``model``, or None when it is not supported."""
    if _sharded(model):  # sharded in place after a first use (the SFT warm start, then FSDP2)
        _COMPACT.pop(model, None)
        return None
    lm = _COMPACT.get(model)
    if lm is None:
        if compact_support(model) is not None:
            return None
        lm = _COMPACT[model] = CompactLM(model)
    return lm
