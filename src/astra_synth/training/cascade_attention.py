"""Attention that reads a prompt prefix shared by several rows once per group (cascade attention).

In episode generation most of every row's KV cache is a prefix it shares with others: a GRPO group's eight
rollouts have one prompt, and arenas of one family share ~95 % of theirs (system text and tool schemas).
Decoding is bound by reading that cache: at 32 rows × 700 tokens, attention was a third of a decode step on
2 CPU cores. Here each group's prefix keys and values are kept once, and a layer attends in two parts: every
group's queries together over its prefix, and each row's queries over its own tokens after it. The two
softmaxes are merged by their log-sum-exps, so the result equals attention over the whole row.

:mod:`.turn_cache` passes a :class:`SharedPrefix` to the model as the ``shared_prefix`` keyword (transformers
hands model keywords on to the attention function) while the model's attention implementation is
:data:`NAME` (:func:`cascade`); a call without it is plain SDPA.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "astra_cascade"


@dataclass
class SharedPrefix:
    """Each group's prefix cache (per layer, per group: keys and values of shape (1, kv_heads, length, dim),
    without padding), its tokens, and which group each batch row continues."""

    keys: list[list[Any]]
    values: list[list[Any]]
    tokens: list[list[int]]
    group_of: list[int]
    _members: list[tuple[int, Any]] | None = field(default=None, init=False)

    def select(self, rows: Sequence[int]) -> SharedPrefix:
        """The same prefixes for a batch made of ``rows`` of this one."""
        return self.regroup([self.group_of[r] for r in rows])

    def regroup(self, group_of: list[int]) -> SharedPrefix:
        """The same prefixes for a batch whose rows continue ``group_of``."""
        return replace(self, group_of=group_of)

    def members(self, device: Any) -> list[tuple[int, Any]]:
        """(group, its rows as an index tensor) for every group with a row in the batch."""
        import torch

        if self._members is None:
            rows: dict[int, list[int]] = {}
            for row, group in enumerate(self.group_of):
                rows.setdefault(group, []).append(row)
            self._members = [(g, torch.tensor(r, device=device)) for g, r in rows.items()]
        return self._members


@contextmanager
def cascading(model: Any) -> Iterator[None]:
    """The model attends with :func:`cascade` inside the block (a call without ``shared_prefix`` is SDPA)."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before


def cascade(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    shared_prefix: SharedPrefix | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Attention over each row's group prefix and then its own cached tokens (``key``/``value``, masked by
    ``attention_mask`` as SDPA would be). Returns (batch, queries, heads, dim) like transformers' SDPA."""
    if shared_prefix is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    import torch

    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    rep = heads // kv_heads
    dtype = value.dtype  # the cache's (bf16 under CPU autocast, where the rotary embedding returns fp32)
    # the query heads that read one key/value head become that head's queries: no key/value copies (GQA)
    packed = query.to(dtype).reshape(batch, kv_heads, rep * length, dim)
    mask = None
    if attention_mask is not None:
        allowed = attention_mask[:, :, None].expand(-1, -1, rep, -1, -1).reshape(batch, 1, rep * length, -1)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=query.device)
        mask.masked_fill_(~allowed, float("-inf"))
    own, own_lse = _attend(packed, key.to(dtype), value, mask, scaling)
    shared = torch.zeros_like(own)
    shared_lse = torch.full_like(own_lse, float("-inf"))
    layer = module.layer_idx
    for group, rows in shared_prefix.members(query.device):
        prefix_k, prefix_v = shared_prefix.keys[layer][group], shared_prefix.values[layer][group]
        if prefix_k.shape[2] == 0:
            continue
        members = packed.index_select(0, rows)  # every member's queries over the group's prefix at once
        n = members.shape[0]
        flat = members.transpose(0, 1).reshape(1, kv_heads, n * rep * length, dim)
        out, lse = _attend(flat, prefix_k.to(dtype), prefix_v.to(dtype), None, scaling)
        shared.index_copy_(0, rows, out.reshape(kv_heads, n, rep * length, dim).transpose(0, 1))
        shared_lse.index_copy_(0, rows, lse.reshape(kv_heads, n, rep * length).transpose(0, 1))
    top = torch.maximum(own_lse, shared_lse)
    w_own, w_shared = (own_lse - top).exp(), (shared_lse - top).exp()
    merged = (own.float() * w_own[..., None] + shared.float() * w_shared[..., None]) / (w_own + w_shared)[
        ..., None
    ]
    out = merged.to(dtype).reshape(batch, heads, length, dim)
    return out.transpose(1, 2).contiguous(), None


def _attend(query: Any, key: Any, value: Any, mask: Any, scale: float | None) -> tuple[Any, Any]:
    """Softmax attention and its log-sum-exp per query (a fully masked query gives 0 and log-sum-exp 0)."""
    import torch

    if query.device.type != "cpu":
        return _attend_math(query, key, value, mask, scale)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, attn_mask=mask, scale=scale
    )
    return out, lse


def _attend_math(query: Any, key: Any, value: Any, mask: Any, scale: float | None) -> tuple[Any, Any]:
    """:func:`_attend` off the CPU, where no fused kernel returns the log-sum-exp (computed in fp32)."""
    import torch

    scores = (query.float() @ key.float().transpose(-1, -2)) * (scale or query.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores + mask.float()
    lse = torch.logsumexp(scores, dim=-1)
    lse = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    out = (scores - lse[..., None]).exp() @ value.float()
    return out.to(query.dtype), lse


AttentionInterface.register(NAME, cascade)
AttentionMaskInterface.register(NAME, sdpa_mask)
