"""Supervised warm start: cross-entropy on completion tokens (and EOS) of correct examples.

Used by ``rollwise sft`` and by the default job, so that RL starts from a policy with non-trivial
accuracy.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.rlvr.models import encode_completions, encode_prompts, sequence_logprobs
from rollwise.runlog import progress_bar


def sft_tensors(tokenizer: PreTrainedTokenizerBase, prompts: list[str], targets: list[str]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Prompt+target sequences (N, P+T), their attention mask, the loss mask (N, T) and T."""
    p_ids, p_mask = encode_prompts(tokenizer, prompts)
    c_ids, c_mask = encode_completions(tokenizer, targets)
    ids = torch.cat([p_ids, c_ids], dim=1)
    attn = torch.cat([p_mask, c_mask.long()], dim=1)
    return ids, attn, c_mask, c_ids.shape[1]


def supervised_warm_start(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                          targets: list[str], steps: int, batch_size: int, lr: float, seed: int
                          ) -> list[float]:
    """Train ``model`` in place for ``steps`` Adam steps; returns the per-step mean token NLL."""
    ids, attn, loss_mask, t = sft_tensors(tokenizer, prompts, targets)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    with progress_bar("sft", total=steps) as bar:
        for _ in range(steps):
            idx = torch.randint(0, ids.shape[0], (batch_size,), generator=gen)
            logp, _ = sequence_logprobs(model, ids[idx], attn[idx], t)
            m = loss_mask[idx]
            loss = -(logp * m).sum() / m.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(info=f"nll {losses[-1]:.3f}")
    model.eval()
    return losses
