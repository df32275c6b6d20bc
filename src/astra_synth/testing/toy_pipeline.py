"""A toy LLM-backed three-stage pipeline for the runner's integration tests, runnable as a script.

``ask`` (LLM, structured) -> ``explode`` (pure fan-out, seeded) -> ``judge`` (LLM, rejects low scores).
The scripted server's answers depend only on the request content, so every run, resume and cache replay
sees the same answers. As a script it runs (or resumes) the pipeline against ``--base-url`` in its own
process, so tests can ``kill -9`` it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from astra_synth.config import EndpointConfig
from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import LLMClient
from astra_synth.llm.ledger import Ledger
from astra_synth.llm.structured import structured_chat
from astra_synth.runs.pipeline import Pipeline, RunOptions
from astra_synth.runs.stage import Rejected, StageContext


class Topic(BaseModel):
    topic: str


class Facts(BaseModel):
    facts: list[str]


class TopicFacts(BaseModel):
    topic: str
    facts: list[str]


class Fact(BaseModel):
    topic: str
    fact: str
    salt: int


class Verdict(BaseModel):
    score: int


class Scored(BaseModel):
    topic: str
    fact: str
    salt: int
    score: int


class Ask:
    name = "ask"
    version = "1"
    input_model = Topic

    async def process(self, item: Topic, ctx: StageContext) -> TopicFacts:
        assert ctx.llm is not None
        prompt = [{"role": "user", "content": f"ASK {item.topic}"}]
        answer = await structured_chat(ctx.llm, prompt, Facts, stage=ctx.stage, max_reasks=1)
        return TopicFacts(topic=item.topic, facts=answer.facts)

    def prompt_hashes(self) -> dict[str, str]:
        return {"ask": hashlib.sha256(b"ASK $topic").hexdigest()}


class Explode:
    name = "explode"
    version = "1"
    input_model = TopicFacts

    async def process(self, item: TopicFacts, ctx: StageContext) -> list[Fact]:
        return [Fact(topic=item.topic, fact=f, salt=ctx.rng.randrange(1000)) for f in item.facts]


class Judge:
    name = "judge"
    version = "1"
    input_model = Fact

    async def process(self, item: Fact, ctx: StageContext) -> Scored | Rejected:
        assert ctx.llm is not None
        prompt = [{"role": "user", "content": f"JUDGE {item.fact} #{item.salt}"}]
        verdict = await structured_chat(ctx.llm, prompt, Verdict, stage=ctx.stage, max_reasks=0)
        if verdict.score < 3:
            return Rejected(reason="low_score", detail=f"score {verdict.score} < 3")
        return Scored(**item.model_dump(), score=verdict.score)


def build_pipeline() -> Pipeline:
    """ask -> explode -> judge, answered by :func:`answer` on a scripted server."""
    return Pipeline("scripted-demo", [Ask(), Explode(), Judge()])


def answer(body: dict[str, Any]) -> Any:
    """The scripted server's handler: a pure function of the first message."""
    first = str(body["messages"][0]["content"])
    h = int(hashlib.sha256(first.encode()).hexdigest(), 16)
    if first.startswith("ASK "):
        k = h % 5  # 0: prose instead of JSON (rejected after a re-ask); 1: no facts (nothing to explode)
        return "I'd rather not say." if k == 0 else {"facts": [f"{first[4:]} fact {i}" for i in range(k - 1)]}
    return {"score": h % 10}


def write_topics(path: Path, n: int) -> None:
    """``n`` topics plus one malformed line (an input error the runner must record, not crash on)."""
    path.write_text("".join(f'{{"topic": "topic-{i}"}}\n' for i in range(n)) + '{"topic": 5}\n')


async def run(base_url: str, run_dir: Path, inputs: Path, cache: Path, concurrency: int) -> str:
    """Run or resume the pipeline into ``run_dir`` against ``base_url``; returns the run status."""
    endpoint = EndpointConfig(
        base_url=base_url,
        model="scripted",
        timeout_s=10,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    async with LLMClient(endpoint, ledger=Ledger(), cache=ResponseCache(cache)) as client:
        print("started", flush=True)
        options = RunOptions(seed=7, concurrency=concurrency, progress=False)
        result = await build_pipeline().run(inputs, run_dir, options, llm=client)
    return result.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(
        asyncio.run(run(args.base_url, args.run_dir, args.inputs, args.cache, args.concurrency)), flush=True
    )


if __name__ == "__main__":
    main()
