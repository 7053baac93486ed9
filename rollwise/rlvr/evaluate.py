"""Evaluation metrics: unbiased pass@k (Chen et al. 2021), maj@k, mean@k, the exact success probability
V(x) of ancestral sampling for unique-answer tasks, a sampled evaluation of a policy on a
task's held-out pool (:func:`evaluate_sampled`, used by ``rollwise eval``), and diversity within the correct
set (distinct-correct@n, equation-level distinct ratio, exact conditional entropy over an enumerable correct
set; :func:`evaluate_diversity`, the measures of our UCPO tests)."""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.rlvr.models import encode_completions, encode_prompts, response_logprobs


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, "Evaluating Large Language Models
    Trained on Code", the estimator of its section 2.1):

        pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

    The product form avoids huge binomials. k > n raises ValueError (an estimate needs n >= k samples).
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} > n={n} samples; draw at least k samples per problem")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems; ``correct[p]`` holds the correctness of each sample of problem p."""
    if not correct:
        raise ValueError("mean_pass_at_k: no problems")
    return sum(pass_at_k(len(row), int(sum(bool(x) for x in row)), k) for row in correct) / len(correct)


def _first_k(row: Sequence, k: int, what: str) -> Sequence:
    if k < 1:
        raise ValueError(f"{what}: k must be >= 1, got k={k}")
    if len(row) < k:
        raise ValueError(f"{what}: k={k} > {len(row)} samples of a problem")
    return row[:k]


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-None answer; ties go to the answer that appears first; None when all are None."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def maj_at_k(answers: Sequence[Sequence[str | None]], gold: Sequence[str], k: int) -> float:
    """Fraction of problems whose majority answer over the FIRST k samples equals the gold answer.

    ``answers[p][i]`` is the extracted (normalised) answer of sample i of problem p, None when no answer
    could be extracted (it abstains). Ties are broken by first occurrence among the k samples; a problem
    whose k samples all abstain counts as wrong.
    """
    if len(answers) != len(gold) or not answers:
        raise ValueError(f"maj_at_k: {len(answers)} answer rows for {len(gold)} gold answers")
    hits = [majority_vote(_first_k(row, k, "maj_at_k")) == g for row, g in zip(answers, gold)]
    return sum(hits) / len(hits)


def mean_at_k(rewards: Sequence[Sequence[float]], k: int) -> float:
    """Mean reward of the first k samples, averaged over problems (mean@k; mean@1 over many samples is the
    unbiased pass@1)."""
    if not rewards:
        raise ValueError("mean_at_k: no problems")
    return sum(sum(map(float, _first_k(row, k, "mean_at_k"))) / k for row in rewards) / len(rewards)


@torch.no_grad()
def exact_success_prob(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                       completions: list[str], temperature: float = 1.0, batch_size: int = 256,
                       log: bool = False, compact: bool = False) -> Tensor:
    """V(x) = prod_t pi(y*_t | x, y*_<t) over the completion's tokens AND the final EOS.

    One teacher-forced pass per batch. For a task with a unique correct completion y*, V(x) is the exact
    probability that plain ancestral sampling at ``temperature`` (no top-k / top-p, max_new_tokens at least
    len(y*) + 1) returns exactly y* and stops, i.e. the expected accuracy on x.

    Args:
        prompts, completions: (N,) strings; completions without EOS (it is appended).
        compact: teacher-force with the compact forward where the model supports it (``models.response_logprobs``).
    Returns:
        (N,) float32 probabilities (log-probabilities when ``log``).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"exact_success_prob: {len(prompts)} prompts for {len(completions)} completions")
    if tokenizer.padding_side != "left":
        raise ValueError("exact_success_prob: the tokenizer must pad on the left (prompts are left-padded, "
                         f"completions right-padded); got padding_side={tokenizer.padding_side!r}")
    if not temperature > 0:
        raise ValueError(f"exact_success_prob: temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(prompts), batch_size):
        p_ids, p_mask = encode_prompts(tokenizer, prompts[start : start + batch_size])
        c_ids, c_mask = encode_completions(tokenizer, completions[start : start + batch_size], add_eos=True)
        logp, _ = response_logprobs(model, p_ids, p_mask, c_ids, c_mask, temperature=temperature, compact=compact)
        out.append((logp * c_mask).sum(dim=-1))
    model.train(was_training)
    total = torch.cat(out).float() if out else torch.zeros(0)
    return total if log else total.exp()


def sampled_success_prob(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Any,
                          examples: Sequence[Any], n: int, max_new_tokens: int, seed: int = 0,
                          temperature: float = 1.0, engine: str = "hf") -> tuple[Tensor, Tensor]:
    """Monte-Carlo V(x): the fraction of ``n`` ancestral samples per example that the task's verifiers reward
    (reward >= 1), with its binomial standard error sqrt(V(1 - V) / n).

    For tasks whose rewarded set is not one enumerable string (``column_arith`` with ``check="answer"``),
    where ``exact_success_prob`` of one trace is only a lower bound. Returns (V (N,), stderr (N,)) float64.
    """
    from rollwise.rlvr.engines import SamplingConfig, make_engine
    from rollwise.rlvr.rewards import RewardRunner
    from rollwise.rlvr.tasks import collate_columns

    eng = make_engine(engine, policy, tokenizer)
    try:
        batch = eng.generate([e.prompt for e in examples],
                             SamplingConfig(n=n, temperature=temperature, max_new_tokens=max_new_tokens), seed)
    finally:
        eng.close()
    rewards, _ = RewardRunner(task.reward_funcs())(batch.prompts, batch.completions, batch.truncated,
                                                   collate_columns([examples[g] for g in batch.group_ids.tolist()]))
    hits = torch.zeros(len(examples), dtype=torch.float64).index_add_(
        0, batch.group_ids, (rewards >= 1.0 - 1e-6).double())
    v = hits / n
    return v, (v * (1 - v) / n).sqrt()


def evaluate_policy(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, unique_answer: bool,
                    examples: list[Any], rewards: Any, sampling: Any, seed: int, compact: bool = False
                    ) -> dict[str, float]:
    """The trainer's evaluation of ``policy`` on test ``examples``: the exact expected accuracy for
    unique-answer tasks (``exact_success_prob``), else the accuracy and mean reward of one sampled completion
    per prompt, scored by the reward runner ``rewards`` (accuracy: the task's verifier). Sampling runs over
    ``policy`` itself (the full-precision weights; the lean sampler with ``compact``, else :class:`HFEngine`),
    never the run's rollout engine (which may be a quantized or remote copy).
    """
    from rollwise.rlvr.engines.hf import HFEngine
    from rollwise.rlvr.engines.lean import LeanEngine
    from rollwise.rlvr.tasks import collate_columns

    if unique_answer:
        v = exact_success_prob(policy, tokenizer, [e.prompt for e in examples],
                               [e.target or e.answer for e in examples], temperature=sampling.temperature,
                               compact=compact)
        return {"eval/exact_accuracy": float(v.mean())}
    one = copy.copy(sampling)
    one.n = 1
    engine = (LeanEngine if compact else HFEngine)(policy, tokenizer, batch_size=sampling.batch_size)
    batch = engine.generate([e.prompt for e in examples], one, seed)
    r, metrics = rewards(batch.prompts, batch.completions, batch.truncated.tolist(), collate_columns(examples))
    return {"eval/accuracy": metrics["reward/accuracy"], "eval/reward": float(r.mean())}


def sample_and_score(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Any, cfg: Any,
                     examples: Sequence[Any], n: int, seed: int) -> tuple[Any, Tensor, dict[str, float]]:
    """Sample ``n`` completions per example with ``cfg.rollout``'s engine and sampling settings and score them
    with the task's verifiers (``cfg.task`` reward settings). Returns the batch, rewards (B,) and reward metrics.
    """
    from rollwise.rlvr.engines import SamplingConfig, make_engine
    from rollwise.rlvr.rewards import RewardRunner
    from rollwise.rlvr.tasks import collate_columns

    r = cfg.rollout
    sampling = SamplingConfig(n=n, temperature=r.temperature, top_p=r.top_p, max_new_tokens=r.max_new_tokens)
    engine = make_engine(r.engine, policy, tokenizer, **{"batch_size": r.batch_size, **r.engine_params})
    try:
        batch = engine.generate([e.prompt for e in examples], sampling, seed)
    finally:
        engine.close()
    runner = RewardRunner(task.reward_funcs(), timeout_s=cfg.task.reward_timeout_s,
                          isolation=cfg.task.reward_isolation)
    rewards, metrics = runner(batch.prompts, batch.completions, batch.truncated,
                              collate_columns([examples[g] for g in batch.group_ids.tolist()]))
    return batch, rewards, metrics


def evaluate_sampled(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Any, cfg: Any,
                     n: int = 64, ks: Sequence[int] = (1,), seed: int = 0, max_prompts: int | None = None
                     ) -> dict[str, float]:
    """Sample ``n`` completions per held-out prompt of ``task`` and score them with its verifiers.

    Reads ``cfg.rollout`` (engine, engine_params, batch_size, temperature, top_p, max_new_tokens) and
    ``cfg.task`` (reward_timeout_s, reward_isolation). Returns ``eval/pass@k`` for each k (unbiased,
    a sample counts as correct when its reward is >= 1), ``eval/mean@k``, ``eval/maj@k`` (majority vote over
    the stripped completions, which are the answers in the built-in tasks), ``eval/mean_reward``, ``eval/truncated_frac``,
    ``eval/reward_failures`` and, for unique-answer tasks sampled with top_p = 1, ``eval/exact_accuracy``
    = mean_x V(x) (the exact value of pass@1).
    """
    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise ValueError(f"evaluate_sampled: every k must be in [1, n={n}]; got {bad}")
    examples = task.examples("test")[:max_prompts]
    r = cfg.rollout
    batch, rewards, metrics = sample_and_score(policy, tokenizer, task, cfg, examples, n, seed)
    correct: list[list[bool]] = [[] for _ in examples]
    scores: list[list[float]] = [[] for _ in examples]
    answers: list[list[str | None]] = [[] for _ in examples]  # the completion is the answer (None: truncated)
    for g, x, c, t in zip(batch.group_ids.tolist(), rewards.tolist(), batch.completions, batch.truncated.tolist()):
        correct[g].append(x >= 1.0 - 1e-6)
        scores[g].append(x)
        answers[g].append(None if t else c.strip())
    out = {f"eval/pass@{k}": mean_pass_at_k(correct, k) for k in ks}
    out.update({f"eval/mean@{k}": mean_at_k(scores, k) for k in ks})
    out.update({f"eval/maj@{k}": maj_at_k(answers, [e.answer for e in examples], k) for k in ks})
    out.update({"eval/mean_reward": float(rewards.mean()), "eval/truncated_frac": float(batch.truncated.float().mean()),
                "eval/reward_failures": metrics["reward/failures"], "eval/prompts": float(len(examples)),
                "eval/samples_per_prompt": float(n)})
    if task.unique_answer and r.top_p == 1.0:
        v = exact_success_prob(policy, tokenizer, [e.prompt for e in examples],
                               [e.target if e.target is not None else e.answer for e in examples],
                               temperature=r.temperature)
        out["eval/exact_accuracy"] = float(v.mean())
    return out


# ----------------------------------------------------------------------------- diversity within the correct set

def distinct_correct(completions: Sequence[str], correct: Sequence[bool]) -> int:
    """distinct-correct@n: the number of unique strings among the correct samples of one problem."""
    if len(completions) != len(correct):
        raise ValueError(f"distinct_correct: {len(completions)} completions for {len(correct)} flags")
    return len({c for c, ok in zip(completions, correct) if ok})


def equation_distinct_ratio(completions: Sequence[str], correct: Sequence[bool],
                            canonical: Callable[[str], str]) -> float:
    """Equation-level distinct ratio of one problem (our definition: the UCPO paper reports
    "equation-level diversity" but neither its available text nor the authors' code defines it):
    distinct canonical forms among the correct samples / number of correct samples; NaN with no correct one.

    ``canonical`` maps an equation to its normal form (for MakeN ``tasks.make_n.canonical_form``: commutative
    operands sorted), so "3*4+1" and "1+4*3" count once.
    """
    if len(completions) != len(correct):
        raise ValueError(f"equation_distinct_ratio: {len(completions)} completions for {len(correct)} flags")
    forms = [canonical(c) for c, ok in zip(completions, correct) if ok]
    return len(set(forms)) / len(forms) if forms else float("nan")


def conditional_entropy(logp: Tensor) -> dict[str, float]:
    """Entropy of the policy conditioned on the correct set, from the log-probs ``logp`` (|C|,) of every
    correct string: pi_C = softmax(logp); returns ``entropy`` H(pi_C), ``h_norm``
    H(pi_C)/log|C| (NaN when |C| < 2), ``mass`` pi(C|x) = sum exp(logp) and ``max_share`` max pi_C."""
    logp = logp.double()
    log_c = logp - torch.logsumexp(logp, dim=0)
    ent = float(-(log_c.exp() * log_c).sum())
    size = logp.numel()
    return {"entropy": ent, "h_norm": ent / math.log(size) if size > 1 else float("nan"),
            "mass": float(logp.exp().sum()), "max_share": float(log_c.exp().max())}


@torch.no_grad()
def exact_conditional_entropy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                              correct_sets: Sequence[Sequence[str]], temperature: float = 1.0,
                              batch_size: int = 1024, compact: bool = False) -> list[dict[str, float]]:
    """Exact ``conditional_entropy`` of each prompt over its full, enumerated correct set C(x).

    Scores every (prompt, correct string + EOS) pair with batched teacher-forced passes
    (``exact_success_prob``), so ``mass`` is the exact probability that ancestral sampling at ``temperature``
    (top_p 1, enough new tokens) returns a correct answer, i.e. the exact pass@1 when the rewarded strings are
    exactly C(x) (MakeN, ``countdown_steps``). ``compact``: as in ``exact_success_prob``. Returns one dict per
    prompt.
    """
    if len(prompts) != len(correct_sets):
        raise ValueError(f"exact_conditional_entropy: {len(prompts)} prompts for {len(correct_sets)} sets")
    empty = [i for i, c in enumerate(correct_sets) if not c]
    if empty:
        raise ValueError(f"exact_conditional_entropy: prompts {empty[:5]} have an empty correct set")
    flat_p = [p for p, cs in zip(prompts, correct_sets) for _ in cs]
    flat_c = [c for cs in correct_sets for c in cs]
    logp = exact_success_prob(model, tokenizer, flat_p, flat_c, temperature=temperature, batch_size=batch_size,
                              log=True, compact=compact)
    out, start = [], 0
    for cs in correct_sets:
        out.append(conditional_entropy(logp[start : start + len(cs)]))
        start += len(cs)
    return out


def evaluate_diversity(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Any, cfg: Any,
                       n: int = 64, ks: Sequence[int] = (1, 4, 16, 64), seed: int = 0,
                       max_prompts: int | None = None, canonical: Callable[[str], str] | None = None,
                       split: str = "test") -> dict[str, float]:
    """Diversity evaluation on the held-out (``split="test"``) or training targets of a task with an
    enumerable correct set (MakeN, countdown_steps).

    Samples ``n`` completions per prompt (``sample_and_score``) and returns, averaged over prompts:
    ``pass@k`` (unbiased) for each k, ``distinct_correct@n``, ``equation_ratio`` (``equation_distinct_ratio``
    over prompts with a correct sample), and exactly (``exact_conditional_entropy``, needs
    ``task.correct_set(example)`` and top_p 1): ``exact_pass@1`` = mean pi(C|x), ``h_norm`` = mean normalised
    conditional entropy, ``max_share`` = mean largest pi_C.
    """
    from rollwise.rlvr.tasks.make_n import canonical_form

    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise ValueError(f"evaluate_diversity: every k must be in [1, n={n}]; got {bad}")
    examples = task.examples(split)[:max_prompts]
    batch, rewards, _ = sample_and_score(policy, tokenizer, task, cfg, examples, n, seed)
    completions: list[list[str]] = [[] for _ in examples]
    correct: list[list[bool]] = [[] for _ in examples]
    for g, c, x in zip(batch.group_ids.tolist(), batch.completions, rewards.tolist()):
        completions[g].append(c)
        correct[g].append(x >= 1.0 - 1e-6)
    ratios = [equation_distinct_ratio(c, ok, canonical or canonical_form) for c, ok in zip(completions, correct)]
    ratios = [x for x in ratios if not math.isnan(x)]
    out = {f"pass@{k}": mean_pass_at_k(correct, k) for k in ks}
    out[f"distinct_correct@{n}"] = sum(distinct_correct(c, ok) for c, ok in zip(completions, correct)) / len(examples)
    out["equation_ratio"] = sum(ratios) / len(ratios) if ratios else float("nan")
    if cfg.rollout.top_p != 1.0:
        raise ValueError(f"evaluate_diversity: exact entropy needs rollout.top_p = 1, got {cfg.rollout.top_p}")
    exact = exact_conditional_entropy(policy, tokenizer, [e.prompt for e in examples],
                                      [task.correct_set(e) for e in examples],
                                      temperature=cfg.rollout.temperature)
    for key, name in (("mass", "exact_pass@1"), ("h_norm", "h_norm"), ("max_share", "max_share")):
        out[name] = sum(d[key] for d in exact) / len(exact)
    return out
