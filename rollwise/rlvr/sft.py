"""Supervised warm start: cross-entropy on completion tokens (and EOS) of correct examples.

Used by ``rollwise sft`` and by the default job, so that RL starts from a policy with non-trivial
accuracy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.rlvr.models import encode_completions, encode_prompts, response_logprobs
from rollwise.runlog import progress_bar


def sft_tensors(tokenizer: PreTrainedTokenizerBase, prompts: list[str], targets: list[str]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded prompts (N, P) and their mask, right-padded targets + EOS (N, T) and the loss mask (N, T)."""
    p_ids, p_mask = encode_prompts(tokenizer, prompts)
    c_ids, c_mask = encode_completions(tokenizer, targets)
    return p_ids, p_mask, c_ids, c_mask


def supervised_warm_start(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                          targets: list[str], steps: int, batch_size: int, lr: float, seed: int,
                          compact: bool = False, stop: Callable[[int], bool] | None = None,
                          check_every: int = 0) -> list[float]:
    """Train ``model`` in place for at most ``steps`` Adam steps; returns the per-step mean token NLL.

    ``compact``: teacher-force with the compact forward (``models.response_logprobs``) where supported.
    ``stop(step)`` is asked every ``check_every`` steps (model in eval mode); True ends the warm start there.
    """
    p_ids, p_mask, c_ids, loss_mask = sft_tensors(tokenizer, prompts, targets)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    with progress_bar("sft", total=steps) as bar:
        for _ in range(steps):
            idx = torch.randint(0, p_ids.shape[0], (batch_size,), generator=gen)
            logp, _ = response_logprobs(model, p_ids[idx], p_mask[idx], c_ids[idx], loss_mask[idx], compact=compact)
            m = loss_mask[idx]
            loss = -(logp * m).sum() / m.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(info=f"nll {losses[-1]:.3f}")
            if stop is not None and check_every and len(losses) % check_every == 0:
                model.eval()
                if stop(len(losses)):
                    break
                model.train()
    model.eval()
    return losses
