"""The default in-process engine: one KV-cached decode loop over the compact forward (``rlvr/compact.py``).

What it does differently from ``transformers.generate`` (``engines/hf.py``, still selectable as
``rollout.engine = "hf"``):

- each distinct prompt of a chunk is prefilled once; its n rollouts copy its keys and values into a cache
  preallocated for the whole response (``(B, H_kv, P + T, D)`` per layer, written in place);
- only temperature and top-p; the log-prob of each sampled token comes from the same logits
  (``log softmax(logits / temperature)``, before top-p truncation, as in the HF engine);
- finished rows are masked (no per-row Python work), and the loop stops as soon as every row has ended.

Models the compact forward does not support (see :func:`rollwise.rlvr.compact.compact_support`) fall back to
:class:`HFEngine` with a one-line notice. The engine shares the policy object with the trainer.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.compact import compact_for, compact_support
from rollwise.rlvr.engines.base import RolloutEngine, SamplingConfig
from rollwise.rlvr.engines.hf import HFEngine, chunk_plan, concat_chunks
from rollwise.rlvr.models import encode_prompts

log = logging.getLogger(__name__)


def sample_tokens(logprobs: Tensor, top_p: float, generator: torch.Generator) -> Tensor:
    """One token per row from ``logprobs`` (B, V) restricted to its top-p nucleus: (B,) int64.

    The nucleus is the smallest set of most likely tokens whose mass reaches ``top_p`` (always at least one).
    """
    probs = logprobs.double().exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = (sorted_p.cumsum(-1) - sorted_p) >= top_p  # mass before this token already reaches top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    # inverse CDF (one uniform per row; ~10x cheaper than torch.multinomial at these sizes): the first token
    # whose cumulative mass exceeds u * total; a zero-probability token never is (its cdf equals the previous)
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64) * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)
    rounded = probs.gather(-1, tok[:, None]).squeeze(-1) == 0  # u * total rounded up to total (~2^-53)
    return torch.where(rounded, probs.argmax(-1), tok)


class LeanEngine(RolloutEngine):
    """Batched ancestral sampling with a preallocated KV cache and shared prompt prefill."""

    def __init__(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 512):
        self.model = policy
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._fallback: HFEngine | None = None
        reason = compact_support(policy)
        if reason is not None:
            log.warning("rollout.engine='lean' falls back to transformers generate: %s", reason)
            self._fallback = HFEngine(policy, tokenizer, batch_size)

    def sync_weights(self, policy: torch.nn.Module) -> None:
        self.model = policy
        if self._fallback is not None:
            self._fallback.sync_weights(policy)

    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int) -> RolloutBatch:
        if self._fallback is not None:
            return self._fallback.generate(prompts, sampling, seed)
        expanded = [p for p in prompts for _ in range(sampling.n)]
        group_ids = torch.arange(len(prompts)).repeat_interleave(sampling.n)
        parts = [self.generate_chunk(expanded[a:b], sampling, chunk_seed)
                 for a, b, chunk_seed in chunk_plan(len(expanded), self.batch_size, seed)]
        return concat_chunks(parts, expanded, group_ids, self.tokenizer)

    @torch.no_grad()
    def generate_chunk(self, prompts: list[str], sampling: SamplingConfig, seed: int
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Prompt ids (B, P), mask (B, P), sampled tokens (B, T') and their log-probs (B, T'), T' <= max_new."""
        lm = compact_for(self.model)
        index = {q: i for i, q in enumerate(dict.fromkeys(prompts))}
        distinct = list(index)
        rows = torch.tensor([index[q] for q in prompts])
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, distinct)
        prefix = lm.prefill(prompt_ids, prompt_mask)
        b, p, t_max = len(prompts), prompt_ids.shape[1], sampling.max_new_tokens
        keys = [_preallocate(k[rows], t_max) for k in prefix.keys]
        values = [_preallocate(v[rows], t_max) for v in prefix.values]
        key_valid = torch.cat([prefix.key_valid[rows], torch.ones(b, t_max, dtype=torch.bool)], dim=1)
        positions = prefix.lengths[rows]
        tokens = torch.full((b, t_max), self.tokenizer.pad_token_id, dtype=torch.long)
        logprobs = torch.zeros(b, t_max)
        done = torch.zeros(b, dtype=torch.bool)
        gen = torch.Generator().manual_seed(seed)
        hidden = prefix.last_hidden[rows]
        eos = self.tokenizer.eos_token_id
        steps = 0
        weights = lm.layer_weights()
        for t in range(t_max):
            lp = torch.log_softmax(lm.logits(hidden).float() / sampling.temperature, dim=-1)
            tok = sample_tokens(lp, sampling.top_p, gen)
            tokens[:, t] = tok
            logprobs[:, t] = lp.gather(-1, tok[:, None]).squeeze(-1)
            steps = t + 1
            done |= tok == eos
            if t + 1 == t_max or bool(done.all()):
                break
            x = self.model.model.embed_tokens(tok[:, None])
            cos, sin = lm.rope(positions[:, None] + t)
            mask = key_valid[:, None, None, : p + t + 1]
            for layer, w, k_cache, v_cache in zip(self.model.model.layers, weights, keys, values):
                q, k, v = lm.project_qkv(layer, w, x, cos, sin)
                k_cache[:, :, p + t] = k[:, :, 0]
                v_cache[:, :, p + t] = v[:, :, 0]
                x = lm.attend_mlp(layer, w, x, q, k_cache[:, :, : p + t + 1], v_cache[:, :, : p + t + 1], mask)
            hidden = x[:, 0]
        return prompt_ids[rows], prompt_mask[rows], tokens[:, :steps], logprobs[:, :steps]


def _preallocate(prefix: Tensor, extra: int) -> Tensor:
    """(B, H, P, D) -> (B, H, P + extra, D) with the prefix copied in; the rest is written during decoding."""
    b, h, p, d = prefix.shape
    out = torch.empty(b, h, p + extra, d, dtype=prefix.dtype)
    out[:, :, :p] = prefix
    return out
