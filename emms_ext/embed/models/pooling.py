"""Token states -> one vector per text. Shapes: hidden ``[B, T, H]``, attention mask ``[B, T]`` (1 = token)."""

from __future__ import annotations

import torch

POOLINGS = ("mean", "cls", "last")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens only ([B, T, H], [B, T] -> [B, H]), in float32: padding must not dilute short
    texts, and half-precision sums over long texts lose digits."""
    m = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.to(torch.float32) * m).sum(1) / m.sum(1).clamp_min(1e-9)


def first_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the first token ([CLS] for BERT-style tokenizers): [B, T, H] -> [B, H]."""
    return hidden[:, 0].to(torch.float32)


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the last real token of each row (right padding): [B, T, H] -> [B, H]. A causal LM has seen
    the whole text only there."""
    last = mask.to(torch.int64).sum(1).clamp_min(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].to(torch.float32)


_POOLERS = {"mean": masked_mean, "cls": first_token, "last": last_token}


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Dispatch on ``how`` in POOLINGS."""
    try:
        return _POOLERS[how](hidden, mask)
    except KeyError:
        raise ValueError(f"pooling must be one of {list(POOLINGS)} (got {how!r})") from None


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length ([B, H] -> [B, H]); all-zero rows stay zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
