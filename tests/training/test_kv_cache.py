"""The in-place KV cache holds exactly what concatenation would, across growths and row selections."""

from __future__ import annotations


def test_appending_in_place_equals_concatenation_across_growths_and_row_selections() -> None:
    import torch

    from astra_synth.training.kv_cache import GrowingCache

    torch.manual_seed(0)
    cache = GrowingCache()
    keys = torch.randn(4, 3, 300, 8)
    values = torch.randn(4, 3, 300, 8)
    got_k, got_v = cache.update(keys, values, 0)
    assert torch.equal(got_k, keys) and torch.equal(got_v, values)
    capacities = {cache.layers[0]._k_buf.shape[2]}
    for step in range(600):  # single tokens, as decoding appends them: the buffers must grow twice
        k, v = torch.randn(keys.shape[0], 3, 1, 8), torch.randn(keys.shape[0], 3, 1, 8)
        keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        got_k, got_v = cache.update(k, v, 0)
        assert torch.equal(got_k, keys) and torch.equal(got_v, values), step
        capacities.add(cache.layers[0]._k_buf.shape[2])
        if step == 100:  # a row that ended leaves the batch; the others keep their history
            keep = torch.tensor([0, 2, 3])
            cache.batch_select_indices(keep)
            keys, values = keys[keep], values[keep]
            assert torch.equal(cache.layers[0].keys, keys)
    assert cache.get_seq_length() == 900
    assert len(capacities) == 3  # grown twice, with room to spare each time


def test_keys_are_kept_in_the_values_dtype() -> None:
    """Under CPU bf16 autocast the rotary embedding hands over fp32 keys beside bf16 values; attention would
    then convert the whole cache every step, so the cache stores the keys as the values are."""
    import torch

    from astra_synth.training.kv_cache import GrowingCache

    cache = GrowingCache()
    keys, values = cache.update(torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8).bfloat16(), 0)
    assert keys.dtype == values.dtype == torch.bfloat16
    keys, _ = cache.update(torch.randn(2, 3, 1, 8), torch.randn(2, 3, 1, 8).bfloat16(), 0)
    assert keys.dtype == torch.bfloat16 and keys.shape[2] == 6
