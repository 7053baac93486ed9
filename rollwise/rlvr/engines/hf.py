"""The default engine: transformers ``generate`` on the trainer's own model, in process."""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.engines.base import RolloutEngine, SamplingConfig
from rollwise.rlvr.models import encode_prompts


def chunk_plan(n_rollouts: int, batch_size: int, seed: int) -> list[tuple[int, int, int]]:
    """``(start, stop, chunk_seed)`` of every chunk of ``n_rollouts``: the seeds of one run's chunks.

    Every engine that splits a batch (in process or over workers) draws its chunk seeds here, so the same
    seed gives the same rollouts whichever engine runs the chunks.
    """
    gen = torch.Generator().manual_seed(seed)
    plan = []
    for start in range(0, n_rollouts, batch_size):
        chunk_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        plan.append((start, min(start + batch_size, n_rollouts), chunk_seed))
    return plan


class HFEngine(RolloutEngine):
    """Batched ancestral sampling with ``model.generate`` (KV cache, left padding, EOS handling).

    The engine shares the policy object with the trainer, so ``sync_weights`` has nothing to copy.
    Log-probs are ``log softmax(logits / temperature)`` of the sampled tokens, from the raw logits
    ``generate`` returns (``output_logits``), i.e. before top-p truncation.
    """

    def __init__(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 512):
        self.model = policy
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def sync_weights(self, policy: torch.nn.Module) -> None:
        self.model = policy

    @torch.no_grad()
    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int) -> RolloutBatch:
        expanded = [p for p in prompts for _ in range(sampling.n)]
        group_ids = torch.arange(len(prompts)).repeat_interleave(sampling.n)
        parts = [self.generate_chunk(expanded[a:b], sampling, chunk_seed)
                 for a, b, chunk_seed in chunk_plan(len(expanded), self.batch_size, seed)]
        return concat_chunks(parts, expanded, group_ids, self.tokenizer)

    def generate_chunk(self, prompts: list[str], sampling: SamplingConfig, seed: int
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        model = self.model
        was_training = model.training
        model.eval()
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = model.generate(
                input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True,
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
                max_new_tokens=sampling.max_new_tokens, output_logits=True, return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
        model.train(was_training)
        response = out.sequences[:, prompt_ids.shape[1] :]
        logits = torch.stack(out.logits, dim=1).float() / sampling.temperature  # (B, T, V)
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, response.unsqueeze(-1)).squeeze(-1)
        return prompt_ids, prompt_mask, response, logprobs


def response_mask_from_ids(response: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """Mask (B, T) that is 1 up to and including the first EOS, and ``truncated`` (B,) = no EOS."""
    is_eos = response == eos_id
    seen_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # an EOS strictly earlier
    mask = (~seen_before).float()
    truncated = ~is_eos.any(-1)
    return mask, truncated


def _pad_left(t: Tensor, width: int, value: int) -> Tensor:
    if t.shape[1] == width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype)
    return torch.cat([pad, t], dim=1)


def _pad_right(t: Tensor, width: int, value: float) -> Tensor:
    if t.shape[1] == width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype)
    return torch.cat([t, pad], dim=1)


def concat_chunks(parts: list[tuple[Tensor, Tensor, Tensor, Tensor]], prompts: list[str], group_ids: Tensor,
            tokenizer: PreTrainedTokenizerBase) -> RolloutBatch:
    """Assemble engine chunks into one RolloutBatch with common padding."""
    pw = max(p[0].shape[1] for p in parts)
    tw = max(p[2].shape[1] for p in parts)
    pad_id = tokenizer.pad_token_id
    prompt_ids = torch.cat([_pad_left(p[0], pw, pad_id) for p in parts])
    prompt_mask = torch.cat([_pad_left(p[1], pw, 0) for p in parts])
    response = torch.cat([_pad_right(p[2], tw, pad_id) for p in parts])
    logprobs = torch.cat([_pad_right(p[3], tw, 0.0) for p in parts])
    mask, truncated = response_mask_from_ids(response, tokenizer.eos_token_id)
    response = torch.where(mask.bool(), response, torch.full_like(response, pad_id))
    logprobs = logprobs * mask
    lengths = mask.sum(-1).long().tolist()
    completions = tokenizer.batch_decode([r[:n] for r, n in zip(response.tolist(), lengths)], skip_special_tokens=True)
    return RolloutBatch(
        prompt_ids=prompt_ids, prompt_mask=prompt_mask, response_ids=response, response_mask=mask,
        rollout_logprobs=logprobs, group_ids=group_ids, truncated=truncated,
        prompts=list(prompts), completions=completions,
    )
