from astra_synth.runs.ids import canonical_json, child_id, item_id, item_of


def test_same_content_same_id_whatever_the_key_order() -> None:
    assert item_id("s", "1", {"a": 1, "b": [1, 2]}) == item_id("s", "1", {"b": [1, 2], "a": 1})
    assert canonical_json({"b": "é", "a": 1}) == '{"a":1,"b":"é"}'


def test_stage_name_version_and_content_each_change_the_id() -> None:
    base = item_id("s", "1", {"a": 1})
    assert (
        len({base, item_id("t", "1", {"a": 1}), item_id("s", "2", {"a": 1}), item_id("s", "1", {"a": 2})})
        == 4
    )
    # The separator keeps ("s1", "") and ("s", "1") apart.
    assert item_id("s1", "", {"a": 1}) != item_id("s", "1", {"a": 1})


def test_child_ids_lead_back_to_their_item() -> None:
    parent = item_id("s", "1", {"a": 1})
    children = [child_id(parent, i) for i in range(3)]
    assert len(set(children)) == 3
    assert {item_of(c) for c in children} == {parent}
    assert item_of(parent) == parent
