"""``astra train rl`` with a scripted generator (``torchrun -m astra_synth.testing.scripted_rl train rl``).

Sampled rewards cannot show that the reward logged under several processes is gathered from all of them; known
per-rank rewards can (tests/training/test_distributed.py).

Per ``play``, the first episode on rank 0 answers wrongly at once (reward 0) and every other episode plays its
arena's golden conversation (reward 1): one GRPO group of two per rank gives rewards [0, 1] on rank 0 and
[1, 1] on rank 1. Runner, sandbox, reward, TRL and the CLI are real; only ``generate`` is scripted.
"""

from __future__ import annotations

import os
from typing import Any

from astra_synth.cli.root import main
from astra_synth.testing.policy import ScriptedPolicy, golden_texts
from astra_synth.training.episodes import EpisodeRunner, TokenEpisode

WRONG = "I cannot tell.<|im_end|>"
_play = EpisodeRunner.play


def scripted_play(runner: EpisodeRunner, model: Any, envs: list[Any]) -> list[TokenEpisode]:
    rank = int(os.environ["RANK"])
    scripts = []
    for i, (env, _) in enumerate(envs):
        texts = [WRONG] if rank == 0 and i == 0 else golden_texts(env.arena)
        scripts.append([runner.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts])
    return _play(runner, ScriptedPolicy(scripts), envs)


if __name__ == "__main__":
    EpisodeRunner.play = scripted_play  # type: ignore[method-assign,assignment]
    main()
