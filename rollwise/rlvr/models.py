"""Policies and tokenizers: a tiny causal LM built from a transformers config, a character tokenizer
that is a real ``PreTrainedTokenizerFast``, and loading of any causal LM from a local path or hub id.

Conventions shared by every stage: prompts are encoded with a leading BOS; a completion is its
characters followed by EOS; the pad token is never a real token.
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from torch import Tensor
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from rollwise.errors import CheckpointError, ModelNotFoundError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: printable ASCII without the control whitespace; enough for arithmetic, countdown and short maths
CHARSET = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
_META = "rollwise_model.json"


def char_tokenizer(charset: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A character-level ``PreTrainedTokenizerFast``: one token per character, BOS prepended.

    Vocabulary: ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``, then ``charset`` in order (95 printable ASCII
    characters by default, 99 tokens in all). Decoding concatenates characters without spaces.
    """
    chars = CHARSET if charset is None else charset
    vocab = {PAD: 0, BOS: 1, EOS: 2, UNK: 3}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    fast.padding_side = "left"
    return fast


@dataclass
class TinyModelConfig:
    """A tiny Qwen2 decoder (about 0.4M parameters at the defaults), built from scratch on CPU."""

    hidden_size: int = 128  # width d
    num_layers: int = 2  # decoder blocks
    num_heads: int = 4  # attention heads
    intermediate_size: int = 512  # MLP width
    max_positions: int = 64  # longest prompt + response
    arch: str = "qwen2"  # qwen2 | llama
    num_kv_heads: int = 0  # key/value heads (grouped-query attention); 0 = num_heads


def tiny_causal_lm(tokenizer: PreTrainedTokenizerBase, cfg: TinyModelConfig, seed: int = 0) -> PreTrainedModel:
    """Build a randomly initialised Qwen2 (or Llama) causal LM sized for ``tokenizer``'s vocabulary.

    ``generate``, ``save_pretrained`` and ``from_pretrained`` work unchanged on the result.
    """
    from transformers import LlamaConfig, Qwen2Config

    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}.get(cfg.arch)
    if cls is None:
        from rollwise.config import ConfigError

        raise ConfigError(f"model.arch={cfg.arch!r} is not supported; valid choices: qwen2, llama")
    config = cls(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def save_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path,
                tiny: TinyModelConfig | None = None) -> None:
    """Save model and tokenizer in Hugging Face format (safetensors), plus a small rollwise marker."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    meta = {"char_tokenizer": _is_char_tokenizer(tokenizer), "vocab_size": len(tokenizer)}
    if tiny is not None:
        meta["tiny"] = asdict(tiny)
    (path / _META).write_text(json.dumps(meta))


def _is_char_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    return isinstance(tokenizer, PreTrainedTokenizerFast) and tokenizer.bos_token == BOS and tokenizer.pad_token == PAD \
        and tokenizer.convert_tokens_to_ids("0") != tokenizer.unk_token_id and len(tokenizer) < 512


def load_policy(name_or_path: str | Path, dtype: torch.dtype = torch.float32
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load any causal LM and its tokenizer from a local folder or a hub id.

    A folder saved by :func:`save_policy` with a character tokenizer is loaded with
    ``PreTrainedTokenizerFast`` directly and its vocabulary size checked (see PITFALLS: ``AutoTokenizer``
    can build a different tokenizer next to a Qwen2 config). Hub ids need network access; set
    ``HF_HUB_OFFLINE=1`` to fail fast without it.
    """
    p = Path(name_or_path)
    if not p.exists() and looks_local(str(name_or_path)):
        raise ModelNotFoundError(f"no such model folder {str(name_or_path)!r} (it looks like a local path, so the "
                              f"hub is not asked)")
    if p.exists() and not (p / "config.json").is_file():
        raise CheckpointError(f"{str(p)!r} is not a model folder: it has no config.json")
    if not p.exists():
        return _load_policy_files(name_or_path, dtype)
    try:
        return _load_policy_files(name_or_path, dtype)
    except Exception as e:  # noqa: BLE001 - damaged safetensors (SafetensorError), tokenizer or config files
        raise CheckpointError(f"model folder {str(p)!r} is unreadable ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]})") from e


def looks_local(name: str) -> bool:
    """Whether ``name`` is meant as a local path rather than a hub id ``org/model``: absolute, relative
    with ``.``/``..``/``~``, more than two path parts, a backslash, or a first part that is a local folder
    (``runs/typo`` when ``runs/`` exists)."""
    parts = Path(name).parts
    return (name.startswith(("/", "./", "../", "~", ".\\")) or name in (".", "..") or "\\" in name
            or len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir()))


def _load_policy_files(name_or_path: str | Path, dtype: torch.dtype
                       ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoTokenizer

    p = Path(name_or_path)
    if p.exists() and (p / _META).exists():
        meta = json.loads((p / _META).read_text())
        if meta.get("char_tokenizer"):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(p))
            if len(tokenizer) != meta["vocab_size"]:
                raise ValueError(f"{p}: tokenizer has {len(tokenizer)} tokens, expected {meta['vocab_size']}")
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(p))
    elif p.exists():
        tokenizer = AutoTokenizer.from_pretrained(str(p))
    else:
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ModelNotFoundError(f"{str(name_or_path)!r} is not a local folder and HF_HUB_OFFLINE=1 forbids the hub")
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids (N, P) and attention mask (N, P), BOS included when the tokenizer adds one."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True)
    return enc["input_ids"], enc["attention_mask"]


def encode_completions(tokenizer: PreTrainedTokenizerBase, completions: list[str], add_eos: bool = True
                       ) -> tuple[Tensor, Tensor]:
    """Right-padded completion ids (N, T) (each followed by EOS) and mask (N, T), no BOS."""
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if add_eos else [])
            for c in completions]
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1.0
    return ids, mask


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: cumsum(mask) - 1, clamped at 0 (what ``generate`` uses)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


def sequence_logprobs(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, response_len: int,
                      temperature: float = 1.0, with_entropy: bool = False
                      ) -> tuple[Tensor, Tensor | None]:
    """Teacher-forced log-probs of the last ``response_len`` tokens of each row.

    Args:
        input_ids: (B, P+T) prompt (left-padded) followed by response (right-padded).
        attention_mask: (B, P+T).
    Returns:
        logprobs (B, T) of ``log softmax(logits / temperature)`` at the given tokens, and the per-token
        entropy (B, T) of that distribution when ``with_entropy``.
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask), use_cache=False)
    logits = out.logits[:, -response_len - 1 : -1, :].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = input_ids[:, -response_len:]
    logprobs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logprobs, entropy


def response_logprobs(model: PreTrainedModel, prompt_ids: Tensor, prompt_mask: Tensor, response_ids: Tensor,
                      response_mask: Tensor, temperature: float = 1.0, with_entropy: bool = False,
                      compact: bool = True) -> tuple[Tensor, Tensor | None]:
    """Teacher-forced log-probs (B, T) of ``response_ids`` after their prompts (and entropies when asked).

    With ``compact`` a supported Llama/Qwen2 model runs the compact forward (``rlvr/compact.py``: identical
    prompts run once, columns past the longest response are not computed and come back as 0). Other models,
    or ``compact=False``, run :func:`sequence_logprobs` on ``cat(prompt, response)`` exactly as before.

    Args:
        prompt_ids, prompt_mask: (B, P) left-padded prompts. response_ids, response_mask: (B, T) right-padded.
    Returns:
        logprobs (B, T) and entropy (B, T) or None, as :func:`sequence_logprobs`.
    """
    from rollwise.rlvr.compact import compact_for

    lm = compact_for(model) if compact else None
    if lm is None:
        ids = torch.cat([prompt_ids, response_ids], dim=1)
        mask = torch.cat([prompt_mask, response_mask.to(prompt_mask.dtype)], dim=1)
        return sequence_logprobs(model, ids, mask, response_ids.shape[1], temperature, with_entropy)
    t = response_ids.shape[1]
    real = response_mask.bool().any(0)
    width = int(real.nonzero().max()) + 1 if bool(real.any()) else 1
    logits = lm.response_logits(prompt_ids, prompt_mask, response_ids[:, :width]).float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, response_ids[:, :width, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else None
    if width < t:
        logprobs = torch.nn.functional.pad(logprobs, (0, t - width))
        entropy = None if entropy is None else torch.nn.functional.pad(entropy, (0, t - width))
    return logprobs, entropy


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def prompt_features(model: PreTrainedModel, prompt_ids: Tensor, prompt_mask: Tensor) -> Tensor:
    """L2-normalised final-layer hidden state at the last prompt token: (B, P) -> (B, d)."""
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids_from_mask(prompt_mask),
                output_hidden_states=True, use_cache=False)
    h = out.hidden_states[-1][:, -1, :].float()  # left padding: the last column is the last prompt token
    return torch.nn.functional.normalize(h, dim=-1)
