"""``SyncRemoteArenaEnv`` plays an arena on the server exactly as ``ArenaEnv`` does in process, seed for
seed, and GRPO rollouts through it (``astra train rl --env-url``) equal local ones, distractors included when
the server draws them as the trainer would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from astra_synth.arenas.distractors import DistractorConfig, DistractorSampler
from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.arenas.server import ArenaCorpus, ArenaServer
from astra_synth.llm.embeddings import LocalEmbedder, VectorCache
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.testing.policy import ScriptedPolicy, golden_texts
from astra_synth.testing.servers import ThreadedServer
from astra_synth.training.episodes import EpisodeRunner
from astra_synth.training.grpo import ArenaRollouts, RLConfig
from astra_synth.training.models import load_tokenizer
from astra_synth.training.remote_env import SyncRemoteArenaEnv


@pytest.fixture(scope="module")
def server(sample_arenas: list[Arena], executor: ToolExecutor) -> Iterator[ThreadedServer]:
    app = ArenaServer(ArenaCorpus({"sample": sample_arenas}), executor, token="").app()
    with ThreadedServer(app) as running:
        yield running


def test_remote_episodes_equal_local_ones_seed_for_seed(
    sample_arenas: list[Arena], executor: ToolExecutor, server: ThreadedServer
) -> None:
    for seed, arena in enumerate(sample_arenas):
        local, remote = ArenaEnv(arena, executor, seed=seed), SyncRemoteArenaEnv(server.url, arena, seed=seed)
        try:
            assert remote.reset() == local.reset()  # same prompt, same tool order
            for turn in golden_turns(arena):
                assert remote.step(turn) == local.step(turn)
            assert remote.reward(arena.final_answer) == local.reward(arena.final_answer)
            assert remote.reset() == local.reset()  # the open session serves the next episode
            wrong = [{"id": "x", "type": "function", "function": {"name": "nope", "arguments": "{}"}}]
            assert remote.step(wrong) == local.step(wrong)
            assert [(c.name, c.ok) for c in remote.calls] == [(c.name, c.ok) for c in local.calls]
            assert [c.ok for c in remote.calls] == [False]  # the reset cleared the golden episode's calls
            assert remote.reward(None) == local.reward(None)
        finally:
            remote.close()


def test_grpo_rollouts_through_the_server_equal_local_ones(
    embedded_model: Path, short_arenas: list[Arena], executor: ToolExecutor, server: ThreadedServer
) -> None:
    """Same RL seed → same arena seeds → the same token episodes and rewards, local or on the server."""
    tokenizer = load_tokenizer(str(embedded_model))
    settings = RLConfig(group_size=2, groups_per_device=2, seed=5, distractors=None)
    played = []
    for sandbox, url in ((executor, None), (None, server.url)):
        runner = EpisodeRunner(tokenizer, settings.episode)
        rollouts = ArenaRollouts(short_arenas, sandbox, runner, settings, None, None, env_url=url)
        ids = [a.id for a in short_arenas[:2]]
        scripts = [
            [tokenizer(t, add_special_tokens=False)["input_ids"] for t in golden_texts(a)]
            for a in short_arenas[:2]
            for _ in range(settings.group_size)
        ]
        scripts[0] = [tokenizer("I cannot tell.<|im_end|>", add_special_tokens=False)["input_ids"]]
        played.append(rollouts.play_groups(ScriptedPolicy(scripts), ids))
    local, remote = played
    assert [g.rewards for g in local] == [[0.0, pytest.approx(1.0)], [pytest.approx(1.0)] * 2]
    assert [g.rewards for g in remote] == [g.rewards for g in local]
    for ours, theirs in zip(local, remote, strict=True):
        assert [e.model_dump() for e in theirs.payload] == [e.model_dump() for e in ours.payload]


def test_grpo_rollouts_with_the_servers_distractors_equal_local_ones(
    embedded_model: Path,
    sample_arenas: list[Arena],
    short_arenas: list[Arena],
    executor: ToolExecutor,
    tmp_path: Path,
) -> None:
    """A server started with the trainer's distractor settings over the same arenas offers, episode seed for
    episode seed, the tools the trainer draws in process: the same prompts (tools rendered in), calls and
    rewards."""
    settings = RLConfig(group_size=2, groups_per_device=2, seed=5, distractors=DistractorConfig(k_per_band=1))
    assert settings.distractors is not None
    sampler = DistractorSampler(sample_arenas, LocalEmbedder(), VectorCache(tmp_path), settings.distractors)
    corpus = ArenaCorpus({"sample": sample_arenas})
    app = ArenaServer(corpus, executor, token="", distractors={"sample": sampler}).app()
    tokenizer = load_tokenizer(str(embedded_model))
    played = []
    with ThreadedServer(app) as server:
        for sandbox, url, drawing in ((executor, None, sampler), (None, server.url, None)):
            runner = EpisodeRunner(tokenizer, settings.episode)
            rollouts = ArenaRollouts(short_arenas, sandbox, runner, settings, drawing, None, env_url=url)
            scripts = [
                [tokenizer(t, add_special_tokens=False)["input_ids"] for t in golden_texts(a)]
                for a in short_arenas[:2]
                for _ in range(settings.group_size)
            ]
            played.append(rollouts.play_groups(ScriptedPolicy(scripts), [a.id for a in short_arenas[:2]]))
    local, remote = played
    assert all(e.distractors and e.distractors.names for g in local for e in g.payload)
    # a group is one prompt (one seed: tool order and draw): GRPO's advantage compares rollouts of one prompt
    assert all(len({tuple(e.prompt_ids) for e in g.payload}) == 1 for g in local)
    assert all(len({e.distractors.model_dump_json() for e in g.payload if e.distractors}) == 1 for g in local)
    assert [g.rewards for g in local] == [[pytest.approx(1.0)] * 2] * 2
    for ours, theirs in zip(local, remote, strict=True):
        # the episodes are the same, and each records the draw that was offered (the server's, remotely)
        assert [e.model_dump() for e in theirs.payload] == [e.model_dump() for e in ours.payload]
