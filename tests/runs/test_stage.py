from astra_synth.runs.stage import item_rng


def test_item_rng_depends_on_seed_and_item_only() -> None:
    draws = [item_rng(7, "abc").random() for _ in range(2)]
    assert draws[0] == draws[1]
    assert item_rng(7, "abc").random() != item_rng(8, "abc").random()
    assert item_rng(7, "abc").random() != item_rng(7, "abd").random()
