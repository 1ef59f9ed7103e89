"""Judges: reward functions that return 0/1 (pass / fail), the "mixture of judges" of CGPO.

CGPO (The Perfect Blend: Redefining RLHF with Mixture of Judges, arXiv 2409.20370, Sec. 3.1) constrains RLHF with
judges that flag reward hacking: rule judges (math answers, code tests, instruction-following checks) and LLM judges
(false refusal, factuality, safety). TRL's convention (``trl.BaseBinaryJudge``) is a binary verdict per completion;
here a judge is a plain TRL-convention reward function ``fn(prompts, completions, **columns) -> list[float]`` that
returns 1.0 (pass) or 0.0 (fail), so it is scored, logged (``reward/judge_format`` ...) and stored in
``rollout.rewards`` like any reward function. The CGPO parts (``grpolab.core.cgpo``) treat every column whose name
starts with ``judge_`` as a judge (or the ones named in ``judges=[...]``) and require all of them to pass.

Rule judges (also registered as ``VERIFIERS`` factories, so ``arith_task(reward=["exact", "judge_format"])`` or a
file task's ``reward`` list can name them; each accepts ``answer_column`` like every verifier factory):

- ``judge_answer``: a verifier (``numeric`` by default) scores at least ``threshold`` (the answer is right);
- ``judge_format``: the stripped completion fully matches a regular expression (default: one number);
- ``judge_length``: the completion has between ``min_chars`` and ``max_chars`` characters;
- ``judge_refusal``: the completion is not a refusal (no refusal phrase, not empty): CGPO's false-refusal judge as a
  rule.

LLM judge: :class:`LLMJudge` asks any local transformers causal LM a yes/no question about the completion and
compares the next-token logits of the "yes" and "no" tokens. It loads a local folder (or built-in name) or takes a
model object; it is not a ``VERIFIERS`` entry (it needs a model), build it in Python and add it to a Task's
``reward_funcs``.

>>> judge = format_judge()
>>> judge(prompts=["2+2="] * 3, completions=["4", " -12 ", "four"])
[1.0, 1.0, 0.0]
>>> judge.__name__
'judge_format'
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any

import torch

from grpolab.core.checks import check_int, check_number
from grpolab.rewards.verifiers import VERIFIERS, completion_text

#: The default pattern of ``judge_format``: one (possibly signed, possibly decimal) number and nothing else.
NUMBER_PATTERN = r"[-+]?\d+(?:\.\d+)?"
#: Phrases that mark a refusal for ``judge_refusal`` (matched case-insensitively anywhere in the completion).
REFUSAL_PHRASES = (
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry",
    "i am sorry",
    "i'm unable",
    "i am unable",
    "as an ai",
    "i must decline",
)
#: The default question and prompt template of :class:`LLMJudge`.
DEFAULT_QUESTION = "Is the response correct, safe and helpful?"
DEFAULT_TEMPLATE = "Prompt: {prompt}\nResponse: {completion}\nQuestion: {question} Answer yes or no.\nAnswer:"


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: the string itself, or chat messages as ``"role: content"`` lines.

    >>> prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}])
    'system: Be brief.\\nuser: 2+2?'
    """
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        return "\n".join(f"{m.get('role', '')}: {completion_text(m)}" for m in prompt if isinstance(m, dict))
    return str(prompt)


class RuleJudge:
    """A judge from a per-completion rule ``check(text, reference) -> bool`` (``reference`` is None unless the judge
    reads ``answer_column``): TRL-convention callable returning 1.0 / 0.0, picklable, with a ``__name__``."""

    def __init__(self, name: str, check: Any, *, answer_column: str | None = None) -> None:
        self.__name__ = name
        self.__qualname__ = name
        self.answer_column = answer_column
        self._check = check

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        if self.answer_column is None:
            references: Sequence[Any] = [None] * len(completions)
        else:
            if self.answer_column not in columns:
                raise ValueError(
                    f"judge {self.__name__!r} reads the reference from column {self.answer_column!r}, which is not "
                    f"among the columns {sorted(columns)}; pass answer_column=<the column holding the answers>"
                )
            references = columns[self.answer_column]
        pairs = zip(completions, references, strict=True)
        return [1.0 if self._check(completion_text(c), ref) else 0.0 for c, ref in pairs]

    def __repr__(self) -> str:
        return f"RuleJudge({self.__name__!r})"


class _Pattern:
    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern)

    def __call__(self, text: str, reference: Any) -> bool:
        return self.regex.fullmatch(text.strip()) is not None


class _Length:
    def __init__(self, min_chars: int, max_chars: int) -> None:
        self.min_chars, self.max_chars = min_chars, max_chars

    def __call__(self, text: str, reference: Any) -> bool:
        return self.min_chars <= len(text) <= self.max_chars


class _NotRefusal:
    def __init__(self, phrases: Sequence[str]) -> None:
        self.phrases = tuple(p.lower() for p in phrases)

    def __call__(self, text: str, reference: Any) -> bool:
        lowered = text.strip().lower()
        return bool(lowered) and not any(p in lowered for p in self.phrases)


class _Verified:
    def __init__(self, verifier: Any, threshold: float) -> None:
        self.verifier, self.threshold = verifier, threshold

    def __call__(self, text: str, reference: Any) -> bool:
        column = self.verifier.answer_column
        value = self.verifier(prompts=[""], completions=[text], **{column: [reference]})[0]
        return value is not None and value >= self.threshold


def _name(base: str, answer_column: str) -> str:
    """``judge_x`` for the default column, ``judge_x_<column>`` otherwise (as the verifiers name themselves)."""
    return base if answer_column == "answer" else f"{base}_{answer_column}"


@VERIFIERS.register("judge_answer")
def answer_judge(
    *, answer_column: str = "answer", verifier: str = "numeric", threshold: float = 1.0, **options: Any
) -> RuleJudge:
    """Rule judge: passes when ``VERIFIERS[verifier]`` scores the completion against ``answer_column`` at least
    ``threshold`` (a verifier's None fails). CGPO's math judge (the answer is right).

    Args:
        answer_column: the column with the reference answers; default ``"answer"``.
        verifier: a ``VERIFIERS`` name (``numeric`` default, ``exact``, ``math``, ``dual`` ...).
        threshold: the score that passes; default 1.0 (a verifier's "correct").
        options: passed to the verifier factory (``rel_tol`` ...).

    >>> answer_judge()(prompts=["q", "q"], completions=["It is 68.", "67"], answer=["68", "68"])
    [1.0, 0.0]
    """
    if verifier.startswith("judge_"):
        raise ValueError(f"judge_answer: verifier must be a scoring verifier, not another judge ({verifier!r})")
    check_number("threshold", threshold, where="judge_answer")
    scorer = VERIFIERS[verifier](answer_column=answer_column, **options)
    return RuleJudge(_name("judge_answer", answer_column), _Verified(scorer, threshold), answer_column=answer_column)


@VERIFIERS.register("judge_format")
def format_judge(*, answer_column: str = "answer", pattern: str = NUMBER_PATTERN) -> RuleJudge:
    """Rule judge: passes when the completion, stripped of surrounding whitespace, fully matches ``pattern``.

    Args:
        answer_column: not read (accepted like every verifier factory; it only names the judge).
        pattern: a Python regular expression; default one number (``NUMBER_PATTERN``: arith's completion format).

    >>> format_judge(pattern=r"[01](,-?\\d+)?")(prompts=["p"] * 3, completions=["1", "0,68", "yes"])
    [1.0, 1.0, 0.0]
    """
    try:
        check = _Pattern(pattern)
    except re.error as e:
        raise ValueError(f"judge_format: pattern {pattern!r} is not a valid regular expression: {e}") from None
    return RuleJudge(_name("judge_format", answer_column), check)


@VERIFIERS.register("judge_length")
def length_judge(*, answer_column: str = "answer", max_chars: int = 2048, min_chars: int = 1) -> RuleJudge:
    """Rule judge: passes when the completion has ``min_chars`` to ``max_chars`` characters (a length rule against
    verbose reward hacking and empty answers).

    Args:
        answer_column: not read (names the judge).
        max_chars: the longest passing completion; default 2048 characters (a bound for chat answers; set it to the
            task's scale); >= min_chars.
        min_chars: the shortest passing completion; default 1 (an empty completion fails); >= 0.

    >>> length_judge(max_chars=3)(prompts=["p"] * 3, completions=["68", "1234", ""])
    [1.0, 0.0, 0.0]
    """
    check_int("min_chars", min_chars, minimum=0, where="judge_length")
    check_int("max_chars", max_chars, minimum=max(min_chars, 0), where="judge_length", hint="at least min_chars")
    return RuleJudge(_name("judge_length", answer_column), _Length(min_chars, max_chars))


@VERIFIERS.register("judge_refusal")
def refusal_judge(*, answer_column: str = "answer", phrases: Sequence[str] = REFUSAL_PHRASES) -> RuleJudge:
    """Rule judge: passes when the completion is not a refusal: not empty and containing none of ``phrases``
    (case-insensitive). A rule stand-in for CGPO's false-refusal LLM judge on prompts that should be answered.

    Args:
        answer_column: not read (names the judge).
        phrases: refusal markers; default ``REFUSAL_PHRASES`` ("I can't", "I'm sorry", "As an AI" ...).

    >>> refusal_judge()(prompts=["p"] * 3, completions=["Sure: 4.", "I'm sorry, I cannot help.", "  "])
    [1.0, 0.0, 0.0]
    """
    if isinstance(phrases, str) or not all(isinstance(p, str) and p for p in phrases):
        raise ValueError(f"judge_refusal: phrases must be a list of non-empty strings, got {phrases!r}")
    return RuleJudge(_name("judge_refusal", answer_column), _NotRefusal(phrases))


class AllOf:
    """One judge from several: 1.0 when every judge passes (CGPO's J = Π_j J_j), for a trainer that takes a single
    judge column. ``__name__`` is ``name`` (default ``judge_all``).

    >>> both = AllOf([format_judge(), length_judge(max_chars=2)])
    >>> both(prompts=["p"] * 3, completions=["12", "123", "ab"])
    [1.0, 0.0, 0.0]
    """

    def __init__(self, judges: Sequence[Any], *, name: str = "judge_all") -> None:
        if not judges:
            raise ValueError("AllOf needs at least one judge")
        self.judges = list(judges)
        self.__name__ = name
        self.__qualname__ = name

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        verdicts = [judge(prompts=prompts, completions=completions, **columns) for judge in self.judges]
        return [
            1.0 if all(v is not None and v >= 0.5 for v in column) else 0.0 for column in zip(*verdicts, strict=True)
        ]


# ---------------------------------------------------------------------------------------------------- LLM judge
class LLMJudge:
    """An LLM judge: any local transformers causal LM answers a yes/no question about each completion; the judge
    passes when the next-token logit of ``yes`` exceeds that of ``no`` by more than ``margin``.

    The text shown to the model is ``template.format(prompt=..., completion=..., question=question)`` (chat prompts as
    ``"role: content"`` lines), tokenised with the model's tokenizer (special tokens added as it adds them). The
    verdict reads the logits at the last position, so the template should end where the answer word starts
    (``"Answer:"`` with ``yes=" yes"``, or a character model's own format). Texts longer than the model's position
    limit keep their LAST tokens (the question and the answer cue). Batches are left-padded with explicit position
    ids, so a completion's verdict does not depend on its batch.

    Args:
        model: a local folder or built-in name (loaded with ``grpolab.models.load_pretrained``: no download), or a
            model object (then ``tokenizer`` is required).
        tokenizer: the model's tokenizer (loaded with the model when ``model`` is a path).
        question: the yes/no question; default ``DEFAULT_QUESTION``.
        template: format string with ``{prompt}``, ``{completion}`` and ``{question}``; default ``DEFAULT_TEMPLATE``.
        yes, no: the answer strings; their FIRST token is compared (they must differ there and be in the
            vocabulary, not the unknown token); default ``" yes"`` / ``" no"`` (BPE tokenizers put the space in the
            word's token). A character model uses characters of its alphabet, e.g. ``"1"`` / ``"0"``.
        margin: the logit difference needed to pass; default 0.0 (``yes`` more likely than ``no``).
        batch_size: texts per forward pass; default 8.
        name: the judge's ``__name__``; default ``"judge_llm"`` (a ``judge_`` prefix makes the CGPO parts treat it
            as a judge by default).

    ``margins(prompts, completions)`` returns the logit differences (float [N]); calling the judge returns
    ``[1.0 if m > margin else 0.0 ...]``. The model is used in eval mode under ``torch.no_grad`` (its train/eval
    mode is restored afterwards).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        question: str = DEFAULT_QUESTION,
        template: str = DEFAULT_TEMPLATE,
        yes: str = " yes",
        no: str = " no",
        margin: float = 0.0,
        batch_size: int = 8,
        name: str = "judge_llm",
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            from grpolab.models import load_pretrained

            model, loaded = load_pretrained(str(model))
            tokenizer = tokenizer if tokenizer is not None else loaded
        if tokenizer is None:
            raise ValueError("LLMJudge: pass the model's tokenizer with a model object (or pass a model folder)")
        check_number("margin", margin, finite=True, where="LLMJudge")
        check_int("batch_size", batch_size, minimum=1, where="LLMJudge")
        for field in ("prompt", "completion", "question"):
            if "{" + field + "}" not in template:
                raise ValueError(f"LLMJudge: template must contain {{{field}}}, got {template!r}")
        self.model, self.tokenizer = model, tokenizer
        self.question, self.template = question, template
        self.margin, self.batch_size = margin, batch_size
        self.yes_id, self.no_id = yes_no_token_ids(tokenizer, yes, no, owner="LLMJudge")
        self.__name__ = name
        self.__qualname__ = name

    def texts(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[str]:
        """The judge's input texts (the template filled in), one per completion."""
        return [
            self.template.format(prompt=prompt_text(p), completion=completion_text(c), question=self.question)
            for p, c in zip(prompts, completions, strict=True)
        ]

    def margins(self, prompts: Sequence[Any], completions: Sequence[Any]) -> torch.Tensor:
        """logit(yes) − logit(no) at the next position of each judge text, float [N] (fp32, on the CPU)."""
        texts = self.texts(prompts, completions)
        return yes_no_margins(self.model, self.tokenizer, texts, self.yes_id, self.no_id, batch_size=self.batch_size)

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        if prompts is None:
            prompts = [""] * len(completions)
        margins = self.margins(prompts, completions)  # [N]
        return [1.0 if math.isfinite(m) and m > self.margin else 0.0 for m in margins.tolist()]

    def __repr__(self) -> str:
        return f"LLMJudge({self.__name__!r}, yes_id={self.yes_id}, no_id={self.no_id}, margin={self.margin})"


def yes_no_token_ids(tokenizer: Any, yes: str, no: str, *, owner: str) -> tuple[int, int]:
    """The first token ids of the answer strings ``yes`` and ``no`` (the tokens an LLM judge or rubric verifier
    compares); ``ValueError`` naming ``owner`` when one encodes to nothing or to the unknown token, or both start
    with the same token."""
    ids = []
    for which, text in (("yes", yes), ("no", no)):
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not encoded:
            raise ValueError(f"{owner}: {which} string {text!r} encodes to no token")
        unk = getattr(tokenizer, "unk_token_id", None)
        if unk is not None and encoded[0] == unk:
            raise ValueError(
                f"{owner}: the first token of {which} string {text!r} is the unknown token: it is not in the "
                "model's vocabulary; choose a string the tokenizer knows"
            )
        ids.append(int(encoded[0]))
    if ids[0] == ids[1]:
        raise ValueError(f"{owner}: yes {yes!r} and no {no!r} start with the same token; choose other strings")
    return ids[0], ids[1]


@torch.no_grad()
def yes_no_margins(
    model: Any, tokenizer: Any, texts: Sequence[str], yes_id: int, no_id: int, *, batch_size: int = 8
) -> torch.Tensor:
    """logit(yes_id) − logit(no_id) for the token after each text, float [N] (fp32, on the CPU): batched,
    left-padded with positions counted over real tokens only, texts longer than the model's positions cut from the
    left (the question and the answer cue are at the end). The model is put in eval mode and left as it was found.
    Shared by :class:`LLMJudge` and the rubric ``LLMVerifier``."""
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is None:
        limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit < 10**7:
        encoded = [ids[-int(limit) :] for ids in encoded]
    if any(len(ids) == 0 for ids in encoded):
        raise ValueError("a judge text encodes to no token; check the template")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # [n, L] left-padded
            mask = torch.zeros(len(chunk), width, dtype=torch.long)  # [n, L]
            for i, row in enumerate(chunk):
                ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row) :] = 1
            position = (mask.cumsum(-1) - 1).clamp(min=0)  # [n, L]: padding does not shift positions
            logits = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position.to(device)
            ).logits[:, -1, :]  # [n, V]: the next-token logits after the last real token
            out.append((logits[:, yes_id] - logits[:, no_id]).float().cpu())  # [n]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)  # [N]


def llm_judge(model: Any, tokenizer: Any = None, **options: Any) -> LLMJudge:
    """An :class:`LLMJudge` (the function form, for symmetry with the rule-judge factories)."""
    return LLMJudge(model, tokenizer, **options)


__all__ = [
    "DEFAULT_QUESTION",
    "DEFAULT_TEMPLATE",
    "NUMBER_PATTERN",
    "REFUSAL_PHRASES",
    "AllOf",
    "LLMJudge",
    "RuleJudge",
    "answer_judge",
    "format_judge",
    "length_judge",
    "llm_judge",
    "prompt_text",
    "refusal_judge",
]
