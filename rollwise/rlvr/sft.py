"""Supervised warm start: cross-entropy on completion tokens (and EOS) of correct examples.

Used by ``rollwise sft`` and by the default job, so that RL starts from a policy with non-trivial
accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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


def sft_loss(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
             completion_ids: torch.Tensor, loss_mask: torch.Tensor, compact: bool = False) -> torch.Tensor:
    """Token-mean NLL of the completion tokens (and EOS) marked by ``loss_mask`` (N, T), teacher-forced after the
    left-padded prompts (N, P); ``compact`` as in :func:`supervised_warm_start`. Returns a scalar."""
    logp, _ = response_logprobs(model, prompt_ids, prompt_mask, completion_ids, loss_mask, compact=compact)
    return -(logp * loss_mask).sum() / loss_mask.sum()


@dataclass
class AccuracyTarget:
    """A ``stop(step)`` for :func:`supervised_warm_start`: True once the exact expected accuracy (mean V(x), one
    teacher-forced pass) on ``prompts`` with their unique ``answers`` reaches ``target``. ``history`` lists
    ``[step, accuracy]`` per check."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    prompts: list[str]
    answers: list[str]
    target: float
    history: list[list[float]] = field(default_factory=list)

    def accuracy(self) -> float:
        from rollwise.rlvr.evaluate import exact_success_prob

        return float(exact_success_prob(self.model, self.tokenizer, self.prompts, self.answers, compact=True).mean())

    def __call__(self, step: int) -> bool:
        self.history.append([step, self.accuracy()])
        return self.history[-1][1] >= self.target


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
            loss = sft_loss(model, p_ids[idx], p_mask[idx], c_ids[idx], loss_mask[idx], compact=compact)
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
