"""Stage 1 — QA generation: a seed becomes a main question, its final answer and a sub-question DAG.

The model writes integer ids and ``depends_on`` lists; the draft is validated *by id* inside the schema (so
an invalid graph is re-asked with the exact problems, like any schema error) and turned into stable string
ids (``q<n>``). The scenario type is derived from the graph, never taken from the model.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from astra_synth.arenas.instance import QAInstance, SubQuestion, dag_problems, scenario_type
from astra_synth.arenas.seeds import QASeed
from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.structured import structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext

MAX_SUBS = 6


class SubQuestionDraft(StrictModel):
    id: int = Field(ge=1, le=MAX_SUBS * 2)
    question: str = Field(min_length=3)
    answer: str = Field(min_length=1)
    depends_on: list[int] = Field(default_factory=list, max_length=MAX_SUBS)
    hop_level: int = Field(ge=1, le=MAX_SUBS)


class QADraft(StrictModel):
    """What the generator must return. Graph rules are checked here so that violations are re-asked."""

    main_question: str = Field(min_length=10)
    final_answer: str = Field(min_length=1)
    sub_questions: list[SubQuestionDraft] = Field(min_length=1, max_length=MAX_SUBS)

    @model_validator(mode="after")
    def _valid_dag(self) -> QADraft:
        problems = dag_problems(to_sub_questions(self))
        if problems:
            raise ValueError("invalid dependency graph: " + "; ".join(problems))
        return self


def to_sub_questions(draft: QADraft) -> list[SubQuestion]:
    return [
        SubQuestion(
            id=f"q{d.id}",
            question=d.question.strip(),
            answer=d.answer.strip(),
            parents=[f"q{p}" for p in d.depends_on],
            hop_level=d.hop_level,
        )
        for d in draft.sub_questions
    ]


def _source_block(seed: QASeed) -> str:
    zh = seed.language == "zh"
    if seed.question:
        head = (
            "需要拆解的问题（先回答它，再选择合理的拆解深度）："
            if zh
            else "Question to decompose (answer it first, then choose a sensible decomposition depth):"
        )
        return f"\n{head}\n{seed.question}\n"
    if seed.knowledge_corpus:
        head = (
            "参考资料（答案尽量取自其中）："
            if zh
            else "Knowledge to draw the facts from (take answers from it where possible):"
        )
        return f"\n{head}\n{seed.knowledge_corpus}\n"
    return (
        "\n"
        + ("没有参考资料：请编造合理的数据。" if zh else "No knowledge is given: invent plausible data.")
        + "\n"
    )


class QaGenerateStage:
    """QASeed → QAInstance."""

    name = "qa_generate"
    version = "1"
    input_model = QASeed

    def __init__(self, *, max_reasks: int = 2, temperature: float = 0.7, max_tokens: int = 900) -> None:
        self.max_reasks = max_reasks
        self.temperature = temperature
        self.max_tokens = max_tokens

    def prompt(self, language: str) -> Prompt:
        return load_prompt("astra_synth.arenas", f"qa_generate.{language}.md")

    def prompt_hashes(self) -> dict[str, str]:
        return {p.name: p.sha256 for p in (self.prompt("en"), self.prompt("zh"))}

    async def process(self, item: QASeed, ctx: StageContext) -> QAInstance:
        assert ctx.llm is not None, "qa_generate needs an LLM"
        system = self.prompt(item.language).render(
            domain=item.domain,
            min_hops=item.min_hops,
            max_hops=item.max_hops,
            source_block=_source_block(item),
        )
        user = "请生成一个实例。" if item.language == "zh" else "Write one instance."
        draft = await structured_chat(
            ctx.llm,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            QADraft,
            stage=self.name,
            max_reasks=self.max_reasks,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=ctx.rng.randrange(2**31),
        )
        subs = to_sub_questions(draft)
        if not item.min_hops <= len(subs) <= item.max_hops:
            raise Rejection(
                "hop_budget", f"{len(subs)} sub-questions, the seed asks for {item.min_hops}..{item.max_hops}"
            )
        return QAInstance(
            language=item.language,
            domain=item.domain,
            scenario_type=scenario_type(subs),
            main_question=draft.main_question.strip(),
            final_answer=draft.final_answer.strip(),
            sub_questions=subs,
            seed=item.model_dump(),
        )
