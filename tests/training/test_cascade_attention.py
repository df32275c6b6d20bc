"""Cascade attention equals attention over each row's whole sequence (its group's prefix, then its own
cached tokens), for grouped-query heads, groups whose rows are not contiguous, a group without a prefix,
padding and several causal queries."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def _reference(query, prefixes, group_of, key, value, allowed, scale):  # type: ignore[no-untyped-def]
    """Plain softmax attention in fp64 over [prefix | own tokens], key/value heads repeated."""
    import torch

    rows = []
    rep = query.shape[1] // key.shape[1]
    for b in range(query.shape[0]):
        pk, pv = prefixes[group_of[b]]
        k = torch.cat([pk[0], key[b]], dim=1).repeat_interleave(rep, dim=0).double()
        v = torch.cat([pv[0], value[b]], dim=1).repeat_interleave(rep, dim=0).double()
        ok = torch.cat([torch.ones(query.shape[2], pk.shape[2], dtype=torch.bool), allowed[b, 0]], dim=1)
        scores = (query[b].double() @ k.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~ok, float("-inf"))
        rows.append(torch.softmax(scores, dim=-1) @ v)
    return torch.stack(rows).transpose(1, 2)  # (batch, queries, heads, dim) like the attention functions


def _case(seed: int) -> dict:  # type: ignore[type-arg]
    import torch

    g = torch.Generator().manual_seed(seed)
    batch, heads, kv_heads, length, own, dim = 5, 6, 2, 3, 7, 16
    group_of = [1, 0, 1, 2, 0]  # rows of a group are not next to each other; group 2 has no prefix
    prefixes = [
        (torch.randn(1, kv_heads, n, dim, generator=g), torch.randn(1, kv_heads, n, dim, generator=g))
        for n in (4, 9, 0)
    ]
    pads = [0, 2, 1, 3, 0]  # each row's own tokens are left-padded; the last `length` are the queries
    allowed = torch.zeros(batch, 1, length, own, dtype=torch.bool)
    for b, pad in enumerate(pads):
        for i in range(length):
            allowed[b, 0, i, pad : own - length + i + 1] = True  # causal over the row's real tokens
    return {
        "query": torch.randn(batch, heads, length, dim, generator=g),
        "key": torch.randn(batch, kv_heads, own, dim, generator=g),
        "value": torch.randn(batch, kv_heads, own, dim, generator=g),
        "prefixes": prefixes,
        "group_of": group_of,
        "allowed": allowed,
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_cascade_equals_attention_over_the_whole_rows(seed: int) -> None:
    import torch

    from astra_synth.training.cascade_attention import SharedPrefix, cascade

    c = _case(seed)
    shared = SharedPrefix(
        keys=[[k for k, _ in c["prefixes"]]],
        values=[[v for _, v in c["prefixes"]]],
        tokens=[[1] * k.shape[2] for k, _ in c["prefixes"]],
        group_of=c["group_of"],
    )
    scale = 16**-0.5
    out, _ = cascade(
        SimpleNamespace(layer_idx=0),
        c["query"],
        c["key"],
        c["value"],
        c["allowed"],
        scaling=scale,
        shared_prefix=shared,
    )
    want = _reference(c["query"], c["prefixes"], c["group_of"], c["key"], c["value"], c["allowed"], scale)
    assert out.shape == want.shape
    assert torch.allclose(out.double(), want, atol=1e-5)
    # rows taken out of the batch (a finished episode) keep their own group
    picked = shared.select([3, 0])
    out, _ = cascade(
        SimpleNamespace(layer_idx=0),
        c["query"][[3, 0]],
        c["key"][[3, 0]],
        c["value"][[3, 0]],
        c["allowed"][[3, 0]],
        scaling=scale,
        shared_prefix=picked,
    )
    assert torch.allclose(out.double(), want[[3, 0]], atol=1e-5)


def test_attention_off_the_cpu_matches_the_fused_kernel() -> None:
    """The fp32 path used where no fused kernel returns the log-sum-exp agrees with the CPU kernel,
    fully masked queries included (0 and log-sum-exp 0, never NaN)."""
    import torch

    from astra_synth.training.cascade_attention import _attend, _attend_math

    c = _case(2)
    query = c["query"].reshape(5, 2, 9, 16)
    allowed = c["allowed"][:, :, None].expand(-1, -1, 3, -1, -1).reshape(5, 1, 9, 7).clone()
    allowed[1, 0, 0] = False  # a padding query that sees nothing
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    fused, fused_lse = _attend(query, c["key"], c["value"], mask, 0.25)
    math, math_lse = _attend_math(query, c["key"], c["value"], mask, 0.25)
    assert torch.allclose(fused, math, atol=1e-5) and torch.allclose(fused_lse, math_lse, atol=1e-5)
    assert not math.isnan().any() and float(math_lse[1, 0, 0]) == 0.0
