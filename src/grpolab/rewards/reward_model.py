"""Reward models: sequence classifiers loaded from local folders as TRL-convention reward functions.

A reward model (RM) is a transformers ``AutoModelForSequenceClassification`` (``save_pretrained`` output: a folder
with ``config.json``, the weights and the tokenizer) whose K output logits score a prompt + completion. grpolab loads
it only from a LOCAL folder (``local_files_only=True``; never a hub) and wraps it as a reward function in TRL's
plain-callable convention, ``fn(prompts, completions, **columns) -> list[float]``, so it can sit in a task's reward
list next to the verifiers and is logged like them (``reward/<name>``):

- :class:`RewardModel` — one head of one model; ``K = 1`` (a scalar RM, the usual Bradley-Terry RM) needs no head,
  a multi-head model (HydroX's multi-label regression RM, arXiv 2503.21819: one backbone, K regression heads) needs
  ``head`` (a label of ``config.id2label`` or an index).
- :func:`reward_model_heads` — all K heads of a multi-head model as K functions named ``<name>_<label>`` that share
  ONE loaded model and ONE forward pass per batch (the first head's call scores every head, the others reuse it), so
  each objective is logged separately (``reward/rm_x_correct``, ``reward/rm_x_brevity``).

Names: every reward model's name starts with ``"rm_"`` (``name`` defaults to the folder's name; ``"rm_"`` is put in
front unless it is there already), which is how the ``ensemble`` and ``multi_objective`` shaping entries
(``grpolab.core.reward_combination``) find reward-model columns by default.

In a task's reward list (``grpolab.rewards.verifiers.build_rewards``), through ``VERIFIERS``:
``--task-args "{reward: [exact, {reward_model: {path: rms/rm_0}}, {reward_model: {path: rms/rm_1}}]}"``;
``{reward_model_heads: {path: rms/multi}}`` adds every head.

Scoring (batched, ``torch.inference_mode``, on the model's device): the text of a completion is ``prompt +
completion`` for string prompts (the tokenizer adds its special tokens, e.g. BOS); for chat prompts the messages
``prompt + [{"role": "assistant", "content": completion}]`` go through the tokenizer's chat template
(``apply_chat_template(..., tokenize=False)``, then tokenised without adding special tokens again: the template
holds them); a tokenizer without a chat template raises ``ValueError`` for chat prompts. Sequences are padded on the
RIGHT (the model pools the last non-pad token, the transformers convention for decoder RMs; encoders pool their first
token) and truncated on the LEFT to ``max_length`` tokens (the end of the completion, where a decoder RM reads its
score, is kept). A completion's score does not depend on the batch it is scored in (tested).

:func:`train_reward_model` trains a tiny character-level RM (``grpolab.models.char_tokenizer`` + a
``LlamaForSequenceClassification`` sized like ``tiny_llama_config``) by regression on K labels (MSE, HydroX's
multi-label regression) or BCE, in seconds on a CPU; :func:`arith_reward_examples` makes labelled ``arith``
completions for it (``scripts/train_reward_models.py`` trains a seeded ensemble).
"""

from __future__ import annotations

import random
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from grpolab.core.checks import check_int, check_number
from grpolab.core.reward_combination import RM_PREFIX
from grpolab.rewards.verifiers import VERIFIERS, completion_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: dtypes a reward model may be loaded in.
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
#: A chat template that joins the messages' contents after BOS: chat prompts then score exactly like the string
#: prompt + completion (the tiny RMs' template; real RMs ship their own).
PLAIN_CHAT_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"


def reward_model_name(name: str) -> str:
    """A reward model's log name: ``name`` with characters other than letters, digits and ``_`` replaced by ``_``,
    and ``"rm_"`` in front unless it starts so already.

    >>> reward_model_name("rm_0"), reward_model_name("helpful-v2"), reward_model_name("RM_x")
    ('rm_0', 'rm_helpful_v2', 'rm_RM_x')
    """
    clean = re.sub(r"\W", "_", str(name)).strip("_") or "model"
    return clean if clean.startswith(RM_PREFIX) else RM_PREFIX + clean


def _resolve_folder(path: Any) -> Path:
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"reward model: path must be a local folder (save_pretrained output), got {path!r}")
    folder = Path(path).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        what = "has no config.json" if folder.is_dir() else "does not exist"
        raise ValueError(
            f"reward model: {str(path)!r} {what}; give the local folder of a sequence-classification model saved with "
            "save_pretrained (config.json, weights, tokenizer files). grpolab never downloads models from a hub; "
            "scripts/train_reward_models.py makes tiny ones"
        )
    return folder.resolve()


def _pick_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Backbone:
    """One loaded sequence classifier and its tokenizer, shared by every head function of the same folder, device
    and dtype; remembers the scores [B, K] of the last batch so that K head functions cost one forward pass."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        architectures = list(getattr(config, "architectures", None) or [])
        if architectures and not any("SequenceClassification" in a or "Reward" in a for a in architectures):
            raise ValueError(
                f"reward model: {folder} holds a {architectures} model, not a sequence classifier; its score head "
                "would be random. Save a *ForSequenceClassification model (AutoModelForSequenceClassification)"
            )
        self.folder = folder
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model: PreTrainedModel = AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, dtype=dtype
        )
        self.model.to(device).eval().requires_grad_(False)
        tok = self.tokenizer
        if tok.pad_token_id is None:  # decoder RMs often have no pad token: pad with EOS (TRL's convention)
            if tok.eos_token is None:
                raise ValueError(f"reward model: the tokenizer in {folder} has neither a pad nor an EOS token")
            tok.pad_token = tok.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = tok.pad_token_id  # the model finds the last non-pad token with it
        tok.padding_side = "right"  # left-padded inputs would shift a decoder's positions (batch-dependent scores)
        tok.truncation_side = "left"  # keep the end of the completion, where a decoder RM reads its score
        self.num_labels = int(self.model.config.num_labels)
        id2label = getattr(self.model.config, "id2label", None) or {}
        self.labels = [str(id2label.get(i, id2label.get(str(i), f"label_{i}"))) for i in range(self.num_labels)]
        limits = [tok.model_max_length, getattr(self.model.config, "max_position_embeddings", None)]
        finite = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
        self.max_length = min(finite) if finite else 2048
        self._last: tuple[Any, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompt: Any, completion: Any, max_length: int) -> list[int]:
        """Token ids of one prompt + completion (see the module docstring for chat prompts)."""
        tok = self.tokenizer
        if isinstance(prompt, str):
            text, special = prompt + completion_text(completion), True
        elif isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
            if not getattr(tok, "chat_template", None):
                raise ValueError(
                    f"reward model {self.folder.name}: chat prompts need a tokenizer with a chat template, and the "
                    "tokenizer has none; set tokenizer.chat_template and save it again, or use string prompts"
                )
            if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
                reply = list(completion)
            else:
                reply = [{"role": "assistant", "content": completion_text(completion)}]
            text, special = tok.apply_chat_template([*prompt, *reply], tokenize=False), False
        else:
            raise ValueError(f"reward model: a prompt must be a string or chat messages, got {type(prompt).__name__}")
        return tok(text, add_special_tokens=special, truncation=True, max_length=max_length)["input_ids"]

    def scores(self, prompts: Sequence[Any], completions: Sequence[Any], *, batch_size: int, max_length: int):
        """Scores float32 [B, K] of B completions, on the CPU; reused when asked again for the same batch."""
        if len(prompts) != len(completions):
            raise ValueError(f"reward model: {len(prompts)} prompts for {len(completions)} completions")
        ids = [self.encode(p, c, max_length) for p, c in zip(prompts, completions, strict=True)]
        key = (max_length, tuple(tuple(x) for x in ids))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        out = []
        with torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                chunk = [{"input_ids": x} for x in ids[start : start + batch_size]]
                batch = self.tokenizer.pad(chunk, padding=True, return_tensors="pt").to(self.device)
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                out.append(logits.float().cpu())  # [b, K]
        scores = torch.cat(out) if out else torch.zeros(0, self.num_labels)  # [B, K]
        self._last = (key, scores)
        return scores


#: Loaded backbones by (folder, device, dtype), alive while a reward function holds them.
_LOADED: weakref.WeakValueDictionary[tuple[str, str, str], _Backbone] = weakref.WeakValueDictionary()


def _backbone(path: Any, device: str | None, dtype: str) -> _Backbone:
    if dtype not in DTYPES:
        raise ValueError(f"reward model: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    folder, where = _resolve_folder(path), _pick_device(device)
    key = (str(folder), str(where), str(DTYPES[dtype]))
    found = _LOADED.get(key)
    if found is None:
        found = _Backbone(folder, where, DTYPES[dtype])
        _LOADED[key] = found
    return found


class RewardModel:
    """One head of a local sequence-classification reward model, as a TRL-convention reward function.

    ``RewardModel(path, head=None, name=None, batch_size=32, max_length=None, device=None, dtype="float32")``;
    calling it, ``fn(prompts, completions, **columns)``, returns one float per completion: the head's logit
    (extra columns such as ``answer`` are ignored: an RM reads no reference).

    Args:
        path: the model's local folder (``save_pretrained`` output with its tokenizer).
        head: which output of a multi-head model (K > 1): a label of ``config.id2label`` or an index 0..K−1. Needed
            when K > 1; for K = 1 leave it None (or 0).
        name: the log name (``reward/<name>``); default the folder's name; ``"rm_"`` is put in front unless present
            (:func:`reward_model_name`). A head function of :func:`reward_model_heads` is ``<name>_<label>``.
        batch_size: completions per forward pass (default 32; usually 8 to 128, by memory).
        max_length: longest tokenised prompt + completion; longer ones keep their last ``max_length`` tokens. Default:
            the tokenizer's ``model_max_length`` or the model's position limit, whichever is smaller.
        device: where the model runs ("cpu", "cuda", "cuda:1"); default cuda when available, else cpu.
        dtype: "float32" (default) or "bfloat16".

    Functions of the same folder, device and dtype share one loaded model. Pickling reloads the model from
    ``path`` on the other side.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        head: str | int | None = None,
        name: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        dtype: str = "float32",
    ) -> None:
        check_int("batch_size", batch_size, minimum=1, where="reward model")
        if max_length is not None:
            check_int("max_length", max_length, minimum=1, where="reward model")
        self._args = dict(
            path=str(path), head=head, name=name, batch_size=batch_size, max_length=max_length, device=device,
            dtype=dtype,
        )  # fmt: skip
        self.backbone = _backbone(path, device, dtype)
        self.head = self._head_index(head)
        self.label = self.backbone.labels[self.head]
        base = reward_model_name(name if name is not None else self.backbone.folder.name)
        self.__name__ = base
        self.__qualname__ = base
        self.batch_size = batch_size
        self.max_length = max_length or self.backbone.max_length

    def _head_index(self, head: str | int | None) -> int:
        labels, K = self.backbone.labels, self.backbone.num_labels
        if head is None:
            if K == 1:
                return 0
            raise ValueError(
                f"reward model {self.backbone.folder.name} has {K} heads {labels}: pass head=<label or index>, or use "
                "reward_model_heads to score every head (each logged separately)"
            )
        if isinstance(head, int) and not isinstance(head, bool):
            if 0 <= head < K:
                return head
        elif isinstance(head, str) and head in labels:
            return labels.index(head)
        raise ValueError(
            f"reward model {self.backbone.folder.name}: head {head!r} is not one of {labels} or 0..{K - 1}"
        )

    @property
    def labels(self) -> list[str]:
        """The model's K head labels (``config.id2label``)."""
        return list(self.backbone.labels)

    def scores(self, prompts: Sequence[Any], completions: Sequence[Any]) -> torch.Tensor:
        """Every head's score of each completion, float32 [B, K] on the CPU."""
        return self.backbone.scores(prompts, completions, batch_size=self.batch_size, max_length=self.max_length)

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any):
        if prompts is None:
            raise ValueError(f"reward model {self.__name__!r} scores prompt + completion: pass prompts")
        return self.scores(list(prompts), list(completions))[:, self.head].tolist()

    def __reduce__(self):
        return (_rebuild, (self._args, self.__name__))

    def __repr__(self) -> str:
        return f"RewardModel({self._args['path']!r}, head={self.label!r}, name={self.__name__!r})"


def _rebuild(args: dict, name: str) -> RewardModel:
    fn = RewardModel(**args)
    fn.__name__ = fn.__qualname__ = name
    return fn


def reward_model_heads(path: str | Path, *, name: str | None = None, **options: Any) -> list[RewardModel]:
    """Every head of a (multi-head) reward model as its own reward function, named ``<name>_<label>``, sharing one
    loaded model and one forward pass per batch. ``name`` and ``options`` as :class:`RewardModel` (``head`` is not
    an option here). A one-head model gives one function named ``<name>`` (no label suffix).
    """
    if "head" in options:
        raise ValueError("reward_model_heads scores every head; use reward_model with head=... for one of them")
    first = RewardModel(path, head=0, name=name, **options)
    if first.backbone.num_labels == 1:
        return [first]
    heads = [first, *(RewardModel(path, head=k, name=name, **options) for k in range(1, first.backbone.num_labels))]
    for fn in heads:
        label = re.sub(r"\W", "_", fn.label)
        fn.__name__ = fn.__qualname__ = f"{fn.__name__}_{label}"
    return heads


@VERIFIERS.register("reward_model")
def reward_model(
    *,
    answer_column: str = "answer",
    path: str,
    head: str | int | None = None,
    name: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | None = None,
    dtype: str = "float32",
) -> RewardModel:
    """``VERIFIERS["reward_model"]``: a :class:`RewardModel` (one head) for a task's reward list. ``answer_column``
    is accepted for the verifier signature and ignored (a reward model reads no reference)."""
    return RewardModel(
        path, head=head, name=name, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype
    )


@VERIFIERS.register("reward_model_heads")
def reward_model_heads_verifier(
    *,
    answer_column: str = "answer",
    path: str,
    name: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | None = None,
    dtype: str = "float32",
) -> list[RewardModel]:
    """``VERIFIERS["reward_model_heads"]``: every head of a reward model (:func:`reward_model_heads`), a LIST of
    functions that ``build_rewards`` splices into the task's reward list."""
    return reward_model_heads(path, name=name, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype)


# ---------------------------------------------------------------- a tiny trainer


@dataclass
class TrainedRewardModel:
    """What :func:`train_reward_model` returns: the model (eval mode), its tokenizer, the loss of every step, and
    the folder it was saved to (None when not saved)."""

    model: Any
    tokenizer: Any
    losses: list[float] = field(default_factory=list)
    path: Path | None = None


def train_reward_model(
    texts: Sequence[str],
    labels: Sequence[Sequence[float]] | torch.Tensor,
    *,
    label_names: Sequence[str] | None = None,
    loss: str = "mse",
    chars: str | None = None,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 64,
    steps: int = 300,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    output_dir: str | Path | None = None,
) -> TrainedRewardModel:
    """Train a tiny character-level sequence classifier to predict K labels of each text, by regression.

    The model is a ``LlamaForSequenceClassification`` with the config of ``grpolab.models.tiny_llama_config``
    (untied embeddings: a classifier has no LM head) over ``grpolab.models.char_tokenizer``; K = the number of label
    columns, with ``config.id2label`` from ``label_names``. Each step draws ``batch_size`` examples (seeded, with
    replacement) and takes one AdamW step on

    - ``loss="mse"`` (default): mean over examples and heads of (logit − label)², HydroX's multi-label regression
      (arXiv 2503.21819: "train with MSE on per-aspect labels");
    - ``loss="bce"``: binary cross-entropy with logits (labels in [0, 1]); the head's logit is then the log-odds.

    Args:
        texts: N prompt + completion strings (what :class:`RewardModel` scores for string prompts).
        labels: float [N, K] (a list of K-lists, or a list of floats for K = 1).
        label_names: K head names (default ``label_0``...); used by :func:`reward_model_heads` to name the heads.
        loss: "mse" or "bce".
        chars: the tokenizer's characters (default ``grpolab.models.CHARS``, the arith alphabet).
        hidden, layers, heads, max_positions: model size (defaults 32, 2, 4, 64: ~30k parameters, seconds on a CPU).
        steps, batch_size, learning_rate: optimisation (defaults 300, 64, 3e-3).
        seed: seed of the initialisation and of the batch draws (the global RNG is left untouched).
        output_dir: when given, the model and tokenizer are saved there (``save_pretrained``; the tokenizer with right
            padding and :data:`PLAIN_CHAT_TEMPLATE`), loadable by :class:`RewardModel`.

    Returns a :class:`TrainedRewardModel` (model in eval mode, tokenizer, per-step losses, path).
    """
    from transformers import LlamaForSequenceClassification

    from grpolab.models import CHARS, char_tokenizer, tiny_llama_config

    if loss not in ("mse", "bce"):
        raise ValueError(f"train_reward_model: loss must be 'mse' or 'bce', got {loss!r}")
    for arg, value in (("steps", steps), ("batch_size", batch_size), ("hidden", hidden), ("layers", layers)):
        check_int(arg, value, minimum=1, where="train_reward_model")
    check_number("learning_rate", learning_rate, above=0, where="train_reward_model")
    y = torch.as_tensor(labels, dtype=torch.float32)  # [N, K] or [N]
    y = y[:, None] if y.dim() == 1 else y  # [N, K]
    if y.dim() != 2 or y.shape[0] != len(texts) or not len(texts):
        raise ValueError(f"train_reward_model: need N texts and labels [N, K], got {len(texts)} and {list(y.shape)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("train_reward_model: labels hold NaN or inf")
    if loss == "bce" and bool(((y < 0) | (y > 1)).any()):
        raise ValueError("train_reward_model: loss 'bce' needs labels in [0, 1]")
    K = y.shape[1]
    names = list(label_names) if label_names is not None else [f"label_{k}" for k in range(K)]
    if len(names) != K or len(set(names)) != K:
        raise ValueError(f"train_reward_model: label_names must be {K} distinct names, got {names}")

    tokenizer = char_tokenizer(model_max_length=max_positions, chars=chars or CHARS)
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "left"
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    config = tiny_llama_config(tokenizer, hidden=hidden, layers=layers, heads=heads, max_positions=max_positions)
    config.tie_word_embeddings = False
    config.num_labels = K
    config.id2label = dict(enumerate(names))
    config.label2id = {n: k for k, n in enumerate(names)}
    config.problem_type = "regression" if loss == "mse" else "multi_label_classification"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)
    model.config.pad_token_id = tokenizer.pad_token_id
    encoded = tokenizer(list(texts), truncation=True, max_length=max_positions)["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    rng = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        index = torch.randint(len(encoded), (batch_size,), generator=rng).tolist()
        batch = tokenizer.pad([{"input_ids": encoded[i]} for i in index], padding=True, return_tensors="pt")
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # [b, K]
        target = y[index]  # [b, K]
        if loss == "mse":
            value = torch.nn.functional.mse_loss(logits, target)  # HydroX: MSE on the K labels
        else:
            value = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        losses.append(value.item())
    model.eval()
    path = None
    if output_dir is not None:
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return TrainedRewardModel(model=model, tokenizer=tokenizer, losses=losses, path=path)


#: Head labels of :func:`arith_reward_examples`.
ARITH_LABELS = ("correct", "brevity")


def arith_reward_examples(
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    near_miss: float = 0.25,
    tail: float = 0.2,
    brevity_chars: int = 8,
    labels: Sequence[str] = ARITH_LABELS,
) -> tuple[list[str], list[list[float]]]:
    """``n`` labelled ``arith`` completions ``"23+45=" + completion`` for training a tiny reward model.

    Half of the completions are the right answer; the other half a wrong number: a near miss
    (``grpolab.data.arith.wrong_answer``: one digit changed, ±1 or ±10) with probability ``near_miss``, else a random
    number of the results' range (−99..198). With probability ``tail`` a completion gets 1 to 6 extra characters
    after it (``"68 +1"``: wrong under the exact verifier). Labels, one column per name in ``labels``:

    - ``"correct"``: 1.0 when the completion equals the answer after stripping spaces (``arith_exact_reward``), else 0;
    - ``"brevity"``: ``max(0, 1 − len(completion) / brevity_chars)``, a second objective for multi-head models.

    What a tiny RM trained on these in seconds learns: the answer's size given the operands and the format (it tells
    the right answer from a random number well above chance), not exact arithmetic: near misses stay close to
    indistinguishable, label noise that makes it an imperfect proxy, the setting reward-model ensembles address.

    >>> texts, y = arith_reward_examples(4, seed=1)
    >>> len(texts), len(y[0])
    (4, 2)
    """
    from grpolab.data.arith import arith_problems, format_answer, format_prompt, solve, wrong_answer

    check_int("n", n, minimum=1, where="arith_reward_examples")
    check_number("near_miss", near_miss, minimum=0, maximum=1, where="arith_reward_examples")
    check_number("tail", tail, minimum=0, maximum=1, where="arith_reward_examples")
    unknown = [x for x in labels if x not in ARITH_LABELS]
    if unknown or not labels:
        raise ValueError(f"arith_reward_examples: labels must be names in {ARITH_LABELS}, got {list(labels)}")
    rng = random.Random(seed)
    problems = arith_problems(split)
    extra = "0123456789+- "
    texts, rows = [], []
    for _ in range(n):
        a, op, b = rng.choice(problems)
        value = solve(a, op, b)
        answer = format_answer(value)
        if rng.random() < 0.5:
            completion = answer
        elif rng.random() < near_miss:
            completion = format_answer(wrong_answer(value, rng))
        else:
            other = value
            while other == value:  # a random result of the task's range, never the right one
                other = rng.randint(-99, 198)
            completion = format_answer(other)
        if rng.random() < tail:
            completion += "".join(rng.choice(extra) for _ in range(rng.randint(1, 6)))
        values = {
            "correct": 1.0 if completion.strip() == answer else 0.0,
            "brevity": max(0.0, 1.0 - len(completion) / brevity_chars),
        }
        texts.append(format_prompt(a, op, b) + completion)
        rows.append([values[x] for x in labels])
    return texts, rows


def accuracy(scores: Sequence[float], labels: Sequence[float], *, threshold: float = 0.5) -> float:
    """Fraction of examples where ``score > threshold`` agrees with ``label > threshold`` (a 0/1 label's accuracy).

    >>> accuracy([0.9, 0.2, 0.7], [1.0, 0.0, 0.0])
    0.6666666666666666
    """
    if len(scores) != len(labels) or not len(scores):
        raise ValueError(f"accuracy: need equally many scores and labels, got {len(scores)} and {len(labels)}")
    hits = [(s > threshold) == (y > threshold) for s, y in zip(scores, labels, strict=True)]
    return sum(hits) / len(hits)
