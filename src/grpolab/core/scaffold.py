"""Prompt scaffolding: hinted prompts for hard groups (Scaf-GRPO) and difficulty-aware prompt augmentation
(DeepVideo-R1). Pure functions; the rollout strategies that sample with them are in :mod:`grpolab.rollout.scaffold`.

**Scaf-GRPO** (Scaf-GRPO: Scaffolded Group Relative Policy Optimization for Enhancing LLM Reasoning, Zhang et al.,
arXiv 2510.19807; code dvlab-research/Scaf-GRPO ``hint_mix_grpo/trainer/ray_trainer.py``). After a guidance-exemption
period, every *true-hard* group (all G on-policy completions scored 0) is re-tried under cumulative hinted prompts
(tiers Knowledge → Solution, one completion per hint level); among the correct hinted completions the one with the
*minimal* level is kept and replaces *one* failing completion of the group (``replace_num = 1``), so the group ends
with exactly one correct sample and a non-zero GRPO advantage. Groups without a correct hinted completion stay as
they are. Functions: :func:`true_hard_groups`, :func:`minimal_level_choice`, :func:`first_failing_member`,
:func:`scaffold_replacement`, :func:`splice_index`.

**DeepVideo-R1's difficulty-aware augmentation** (DeepVideo-R1: Video Reinforcement Fine-Tuning via Difficulty-aware
Regressive GRPO, Park et al., arXiv 2506.07464; spec part A §5). Difficulty ``ΔR(x) = mean reward of a replay
buffer of the last W = 100 rewards − mean_G r(x)``. Hard prompts (ΔR > 0) get a hint that grows with |ΔR|; easy
prompts (ΔR < 0) get a perturbation whose strength grows with |ΔR|. The paper's scaling functions were not
recovered: :func:`augmentation_strength`, :func:`hint_level_for` and :func:`noise_count` are our simple monotone
choices (UNVERIFIED). Video frame noise has no text analogue; :func:`space_noise` inserts spaces only where they
split no number or word (see its docstring for why the task stays well defined). Functions: :func:`update_buffer`,
:func:`buffer_reference`, :func:`difficulty_gap`, the three scalings and :func:`group_member_positions`.

**Hint text**: :func:`answer_prefix_hints` (the generic Solution-tier fallback: growing prefixes of the reference
answer) and :func:`apply_hint` (the hint put *in front of* the prompt, so that a completion still starts right after
the original prompt text and keeps the task's answer format); :func:`map_prompt_text` / :func:`prompt_text` change /
read the question of a string or chat prompt (shared with ICPO's demonstration prompts).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from grpolab.core.dagrpo import hard_groups
from grpolab.core.stats import group_count, group_mean

#: Default form of a hinted prompt: the hint in parentheses, a space, then the original prompt. It uses only
#: characters of the built-in character tokenizer (digits, ``+ - * / = ( ) . ,`` and space).
HINT_TEMPLATE = "({hint}) {prompt}"
#: Characters that, on both sides of a position, make it the inside of a number or word (no space goes there).
_TOKEN_CHARS = frozenset(".,_")


# ---------------------------------------------------------------------------------------------------- Scaf-GRPO
def true_hard_groups(accuracy: Tensor, group: Tensor, num_groups: int, *, threshold: float = 0.0) -> Tensor:
    """Scaf-GRPO's trigger: the groups in which every completion's accuracy is ``<= threshold``: bool [P].

    Scaf-GRPO (arXiv 2510.19807, §3.1; code ``(uid_rewards == 0).all()``) scaffolds only "true-hard" prompts, whose
    G on-policy rollouts all failed. A group without members is not hard. NaN accuracies count as 0.

    Args:
        accuracy: float [N] (the task's 0/1 verifier); group: long [N] in 0..num_groups-1.
        num_groups: P.
        threshold: a completion failed when its accuracy is <= threshold; default 0.0 (a 0/1 verifier).

    DaGRPO's anchor trigger is the same test (:func:`grpolab.core.dagrpo.hard_groups`, which this calls); the two
    conventions added here are the NaN accuracy (a failure) and the group without members (not hard).

    >>> true_hard_groups(torch.tensor([0.0, 0, 1, 0, 0]), torch.tensor([0, 0, 1, 1, 2]), 4).tolist()
    [True, False, True, False]
    """
    acc = torch.nan_to_num(accuracy.float(), nan=0.0)  # [N]
    hard = torch.zeros(num_groups, dtype=torch.bool, device=acc.device)  # [P]
    if acc.numel():
        seen = hard_groups(acc, group, threshold=threshold)  # [max group + 1]
        hard[: seen.shape[0]] = seen
    return hard & (group_count(group, num_groups) > 0)  # [P]: a group without members is not hard


def minimal_level_choice(correct: Tensor, level: Tensor, source: Tensor, num_groups: int) -> Tensor:
    """Per group, the index of its correct hinted completion with the smallest hint level: long [P] (-1: none).

    Scaf-GRPO (code: ``min_hint_level = min(levels of the correct rollouts)``, then ``candidate_indices[0]``): the
    least guidance that still solves the problem. Ties (two correct completions of one level) go to the smaller
    index, as the code's "take the first one".

    Args:
        correct: bool [M] (a hinted completion is correct); level: long [M] hint levels (1 = least guidance);
        source: long [M] the group each hinted completion was sampled for; num_groups: P.

    Hand check: group 0 has correct levels 3 (index 1) and 2 (index 2) → index 2; group 1 has none → -1;
    group 2 has level 1 twice (indices 4, 5) → 4.

    >>> minimal_level_choice(torch.tensor([False, True, True, False, True, True]),
    ...                      torch.tensor([1, 3, 2, 1, 1, 1]), torch.tensor([0, 0, 0, 1, 2, 2]), 3).tolist()
    [2, -1, 4]
    """
    M = correct.shape[0]
    device = level.device
    sentinel = torch.iinfo(torch.long).max
    order = level.long() * max(M, 1) + torch.arange(M, device=device)  # [M]: level first, then index (first wins)
    key = torch.where(correct.bool(), order, torch.full_like(order, sentinel))  # [M]
    best = torch.full((num_groups,), sentinel, dtype=torch.long, device=device).scatter_reduce(
        0, source.long(), key, "amin"
    )  # [P]
    return torch.where(best < sentinel, best % max(M, 1), torch.full_like(best, -1))  # [P]


def first_failing_member(accuracy: Tensor, group: Tensor, num_groups: int, *, threshold: float = 0.0) -> Tensor:
    """Per group, the smallest batch index of a completion with accuracy ``<= threshold``: long [P] (-1: none).

    The completion a rescued hinted one replaces (Scaf-GRPO code: the first row of the question in batch order; in a
    true-hard group every row failed, so "first failing" and "first" coincide).

    >>> first_failing_member(torch.tensor([1.0, 0, 0, 1, 0]), torch.tensor([0, 0, 1, 1, 0]), 3).tolist()
    [1, 2, -1]
    """
    N = accuracy.shape[0]
    device = group.device
    failed = torch.nan_to_num(accuracy.float(), nan=0.0) <= threshold  # [N]
    index = torch.where(failed, torch.arange(N, device=device), torch.full((N,), N, device=device))  # [N]
    first = torch.full((num_groups,), N, dtype=torch.long, device=device).scatter_reduce(0, group, index, "amin")  # [P]
    return torch.where(first < N, first, torch.full_like(first, -1))  # [P]


def scaffold_replacement(
    accuracy: Tensor,
    group: Tensor,
    hint_accuracy: Tensor,
    hint_level: Tensor,
    hint_group: Tensor,
    num_groups: int,
    *,
    threshold: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Scaf-GRPO's replacement plan (``replace_num = 1``): which batch row each rescuing hinted completion replaces.

    A group is rescued when it is true-hard (:func:`true_hard_groups`) and one of its hinted completions has
    accuracy > ``threshold``; the one with the minimal level (:func:`minimal_level_choice`) replaces the group's
    first failing completion (:func:`first_failing_member`). Hinted completions of groups that are not hard are
    ignored.

    Args:
        accuracy: float [N], group: long [N]: the on-policy batch.
        hint_accuracy: float [M], hint_level: long [M], hint_group: long [M]: the hinted completions.
        num_groups: P. threshold: as :func:`true_hard_groups`; default 0.0.

    Returns:
        ``(replace_at long [R], take long [R], hard bool [P], rescued bool [P])``: batch row ``replace_at[r]`` is
        replaced by hinted completion ``take[r]``, in increasing group order.

    Hand check: groups 0 = rows [0, 1] (both 0), 1 = rows [2, 3] ([1, 0]), 2 = row [4] (0); hinted: group 0 levels
    1 (wrong), 2 (right); group 2 level 1 (wrong). Group 0 is rescued with hinted index 1 at row 0; group 2 stays.

    >>> at, take, hard, rescued = scaffold_replacement(
    ...     torch.tensor([0.0, 0, 1, 0, 0]), torch.tensor([0, 0, 1, 1, 2]),
    ...     torch.tensor([0.0, 1, 0]), torch.tensor([1, 2, 1]), torch.tensor([0, 0, 2]), 3)
    >>> at.tolist(), take.tolist(), hard.tolist(), rescued.tolist()
    ([0], [1], [True, False, True], [True, False, False])
    """
    hard = true_hard_groups(accuracy, group, num_groups, threshold=threshold)  # [P]
    hint_ok = torch.nan_to_num(hint_accuracy.float(), nan=0.0) > threshold  # [M]
    hint_ok = hint_ok & hard[hint_group]  # [M]: only hard groups are scaffolded
    chosen = minimal_level_choice(hint_ok, hint_level, hint_group, num_groups)  # [P]
    rescued = chosen >= 0  # [P]
    target = first_failing_member(accuracy, group, num_groups, threshold=threshold)  # [P]
    return target[rescued], chosen[rescued], hard, rescued


def splice_index(n: int, replace_at: Tensor, take: Tensor) -> Tensor:
    """Index into ``cat([batch (n rows), new rows])`` that puts new row ``take[r]`` at position ``replace_at[r]`` and
    keeps every other row in place: long [n]. Used to replace completions without reordering the batch.

    >>> splice_index(4, torch.tensor([2, 0]), torch.tensor([0, 1])).tolist()
    [5, 1, 4, 3]
    """
    if replace_at.numel() != take.numel():
        raise ValueError(f"splice_index: {replace_at.numel()} positions for {take.numel()} new rows")
    if torch.unique(replace_at).numel() != replace_at.numel():
        raise ValueError("splice_index: a batch row is replaced twice; each position may be replaced once")
    index = torch.arange(n, device=replace_at.device)  # [n]
    index[replace_at.long()] = n + take.long()  # [n]
    return index


# ------------------------------------------------------------------------------------------- DeepVideo-R1's ΔR
def update_buffer(buffer: Sequence[float], rewards: Tensor, *, window: int = 100) -> list[float]:
    """The replay buffer after adding ``rewards`` (float [N]): the last ``window`` rewards, oldest first.

    DeepVideo-R1 (arXiv 2506.07464, difficulty-aware augmentation) compares each prompt with "the mean reward of the
    replay buffer"; the spec reads W = 100 samples.

    Args:
        buffer: the previous rewards (a list, kept in the strategy's checkpointed ``state``).
        rewards: float [N]; NaN rewards are skipped.
        window: W, the number of most recent rewards kept; paper 100, usually 50 to 1,000.

    >>> update_buffer([1.0, 0.0], torch.tensor([1.0, 1.0]), window=3)
    [0.0, 1.0, 1.0]
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1 (paper 100), got {window!r}")
    new = [float(x) for x in rewards.detach().flatten().tolist() if not math.isnan(x)]
    return [*buffer, *new][-window:]


def buffer_reference(buffer: Sequence[float], rewards: Tensor) -> float:
    """The reference reward ΔR is measured against: the buffer's mean, or the batch mean while the buffer is empty.

    Our convention (the paper does not say what happens at the first step): the buffer holds *earlier* rewards, so
    at the first step there is none and the current batch's mean (float [N], NaN skipped) stands in for it.

    >>> buffer_reference([1.0, 0.0, 0.0, 1.0], torch.tensor([1.0])), buffer_reference([], torch.tensor([1.0, 0.0]))
    (0.5, 0.5)
    """
    if buffer:
        return float(sum(buffer) / len(buffer))
    values = rewards.detach().float().flatten()  # [N]
    values = values[~torch.isnan(values)]  # [N']
    return float(values.mean()) if values.numel() else 0.0


def difficulty_gap(reward: Tensor, group: Tensor, num_groups: int, *, reference: float) -> Tensor:
    """DeepVideo-R1's difficulty ``ΔR(x) = reference − mean_G r(x)`` of every group: float [P].

    Positive: the prompt is harder than the model's recent average (it gets a hint); negative: easier (it gets
    noise). NaN rewards count as 0 (a failed reward is a failure).

    Args:
        reward: float [N]; group: long [N]; num_groups: P; reference: the replay buffer's mean reward.

    >>> difficulty_gap(torch.tensor([0.0, 0, 1, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 2, 2]), 3, reference=0.5).tolist()
    [0.5, -0.5, 0.0]
    """
    r = torch.nan_to_num(reward.float(), nan=0.0)  # [N]
    return reference - group_mean(r, group, num_groups)  # [P]


def augmentation_strength(gap: Tensor, *, scale: float = 1.0) -> Tensor:
    """How strongly a group is augmented: ``s = min(1, |ΔR| / scale)``, float [P] in [0, 1].

    UNVERIFIED (the paper's scaling was not recovered): the simplest monotone map of |ΔR| onto [0, 1]. With a 0/1
    reward |ΔR| <= 1, so ``scale = 1`` (default) uses the whole range; for other reward ranges set ``scale`` to the
    largest |ΔR| that should mean "full strength" (usually the reward range).

    >>> augmentation_strength(torch.tensor([0.25, -0.5, 3.0])).tolist()
    [0.25, 0.5, 1.0]
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0 (the |ΔR| of full strength; 1 for a 0/1 reward), got {scale}")
    return (gap.abs() / scale).clamp(max=1.0)  # [P]


def hint_level_for(strength: Tensor, num_levels: Tensor) -> Tensor:
    """The hint level of a hard group: ``ceil(s · K)`` clamped to 1..K (0 when s = 0 or K = 0): long [P].

    UNVERIFIED scaling (DeepVideo-R1: "the hint length grows with |ΔR|"): K = the group's number of hint levels; a
    barely hard group gets the first (least) hint, a group at full strength (|ΔR| >= scale) the last (most).

    >>> hint_level_for(torch.tensor([0.1, 0.5, 1.0, 0.0]), torch.tensor([4, 4, 4, 4])).tolist()
    [1, 2, 4, 0]
    """
    k = num_levels.long()  # [P]
    level = torch.ceil(strength.double() * k - 1e-9).long()  # [P]; -1e-9: s·K = 2.0000001 stays 2 (float noise)
    level = torch.minimum(level.clamp(min=1), k)  # [P]
    return torch.where((strength > 0) & (k > 0), level, torch.zeros_like(level))  # [P]


def noise_count(strength: Tensor, *, max_noise: int = 4) -> Tensor:
    """The number of inserted spaces of an easy group: ``ceil(s · max_noise)``: long [P] (0 when s = 0).

    UNVERIFIED scaling (DeepVideo-R1: frame-noise strength grows with |ΔR|).

    Args:
        strength: float [P] in [0, 1] (:func:`augmentation_strength`).
        max_noise: spaces at full strength; default 4 (our choice), usually 1 to 8.

    >>> noise_count(torch.tensor([0.1, 0.5, 1.0, 0.0])).tolist()
    [1, 2, 4, 0]
    """
    if isinstance(max_noise, bool) or not isinstance(max_noise, int) or max_noise < 1:
        raise ValueError(f"max_noise must be an int >= 1 (spaces at full strength, default 4), got {max_noise!r}")
    return torch.ceil(strength.double() * max_noise - 1e-9).long().clamp(min=0)  # [P]


def group_member_positions(group: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
    """Batch positions of the members of each of ``groups`` (long [A]), group after group, each in batch order:
    ``(positions long [M], counts long [A])``.

    >>> [x.tolist() for x in group_member_positions(torch.tensor([0, 1, 0, 2, 1]), torch.tensor([1, 0]))]
    [[1, 4, 0, 2], [2, 2]]
    """
    member = group[None, :] == groups[:, None]  # [A, N]
    counts = member.sum(dim=1)  # [A]
    _, pos = member.nonzero(as_tuple=True)  # [M], [M]: row-major, so group after group, positions ascending
    return pos, counts


# ---------------------------------------------------------------------------------------------------- text
def answer_prefix_hints(answer: Any, *, levels: int = 4) -> list[str]:
    """The generic Solution-tier hints of a reference answer: its first ``ceil(k·L/levels)`` characters for
    k = 1..levels (L = the answer's length), repeated prefixes dropped; the last level is the whole answer.

    Scaf-GRPO's hints are precomputed per problem (tiers Knowledge → Solution, 4 cumulative parts each); a task
    without them still has its reference answer. Revealing a growing part of it is the Solution tier in its plainest
    form; for tasks whose completion *is* the answer (the built-in arith task) a prefix of it is also DeepVideo-R1's
    "partial trace of a correct completion". Whitespace around the answer is stripped.

    Args:
        answer: the reference answer (converted with ``str``).
        levels: the most hint levels; default 4 (Scaf-GRPO: 4 parts per tier), usually 2 to 8.

    >>> answer_prefix_hints("68"), answer_prefix_hints("-22"), answer_prefix_hints("1234", levels=2)
    (['6', '68'], ['-', '-2', '-22'], ['12', '1234'])
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an int >= 1 (Scaf-GRPO: 4 per tier), got {levels!r}")
    text = str(answer).strip()
    cuts: list[int] = []
    for k in range(1, levels + 1):
        cut = -(-k * len(text) // levels)  # ceil(k·L / levels) in integers
        if cut > 0 and (not cuts or cut != cuts[-1]):
            cuts.append(cut)
    return [text[:cut] for cut in cuts]


def apply_hint(prompt: Any, hint: str, *, template: str = HINT_TEMPLATE) -> Any:
    """The hinted prompt ``template.format(hint=hint, prompt=prompt)``; for chat prompts (a list of messages) the
    last user message's content is formatted and the other messages are kept.

    The default template puts the hint *before* the prompt (``"(6) 23+45="``): a completion prompt ends where the
    answer begins, so a hint appended after it would be read as the start of the answer. Scaf-GRPO's own form
    (``"Question: {q}\\n<tier> Hints: {parts}"`` in a chat template) is ``template="Question: {prompt}\\nSolution
    Hints: {hint}"`` for a chat task.

    >>> apply_hint("23+45=", "6")
    '(6) 23+45='
    >>> apply_hint([{"role": "user", "content": "2+2?"}], "4", template="{prompt} Hint: {hint}")
    [{'role': 'user', 'content': '2+2? Hint: 4'}]
    """
    if "{hint}" not in template or "{prompt}" not in template:
        raise ValueError(f"the hint template must contain {{hint}} and {{prompt}}, got {template!r}")
    return map_prompt_text(prompt, lambda text: template.format(hint=hint, prompt=text))


def map_prompt_text(prompt: Any, fn: Callable[[str], str]) -> Any:
    """``fn(text)`` applied to a string prompt, or to the content of the last user message of a chat prompt (a new
    list; the messages are copied). A chat prompt without a user message raises ValueError.

    >>> map_prompt_text("1+1=", str.upper), map_prompt_text([{"role": "user", "content": "a"}], str.upper)
    ('1+1=', [{'role': 'user', 'content': 'A'}])
    """
    last = _last_user_message(prompt)
    if last is None:
        return fn(prompt)
    out = [dict(m) for m in prompt]
    out[last]["content"] = fn(str(out[last].get("content", "")))
    return out


def prompt_text(prompt: Any) -> str:
    """The text :func:`map_prompt_text` maps: a string prompt itself, or the content of the last user message of a
    chat prompt (the question). A chat prompt without a user message raises ValueError.

    >>> chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1="}]
    >>> prompt_text("23+45="), prompt_text(chat)
    ('23+45=', '1+1=')
    """
    last = _last_user_message(prompt)
    return prompt if last is None else str(prompt[last].get("content", ""))


def _last_user_message(prompt: Any) -> int | None:
    """None for a string prompt; the index of the last user message of a chat prompt. Anything else, and a chat
    prompt without a user message (there is no question to change), raises ValueError."""
    if isinstance(prompt, str):
        return None
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        last = max((i for i, m in enumerate(prompt) if m.get("role") == "user"), default=None)
        if last is None:
            roles = [m.get("role") for m in prompt]
            raise ValueError(
                f"a chat prompt needs a user message (its last one holds the question that gets the hint, the noise or "
                f"the demonstrations), got roles {roles}"
            )
        return last
    raise ValueError(f"a prompt must be a string or chat messages [{{'role': ..., 'content': ...}}], got {prompt!r}")


def noise_positions(text: str) -> list[int]:
    """Insertion points (before character i, i = 0..len−1) where a space splits no number or word: i = 0, or the
    two neighbours are not both "token characters" (letters, digits, ``.``, ``,``, ``_``). The end of the text is
    never used (a completion prompt ends where the answer begins).

    >>> noise_positions("23+45="), noise_positions("3.5*2=")
    ([0, 2, 3, 5], [0, 3, 4, 5])
    """

    def token(c: str) -> bool:
        return c.isalnum() or c in _TOKEN_CHARS

    return [i for i in range(len(text)) if i == 0 or not (token(text[i - 1]) and token(text[i]))]


def space_noise(prompt: Any, count: int, rng: random.Random) -> Any:
    """The prompt with ``count`` spaces inserted at :func:`noise_positions` drawn with replacement by ``rng``.

    DeepVideo-R1 perturbs *easy* videos with frame-level Gaussian noise (arXiv 2506.07464); text has no frames. The
    text analogue chosen here (UNVERIFIED) must keep the task well defined, i.e. the reference answer must stay the
    right answer: spaces placed between an operand and an operator (``"23 + 45="``) or at the start change the
    surface form the model has learnt, never the problem; spaces inside a number (``"2 3"``) would change it and
    are not used. For tasks where whitespace carries meaning (code, exact formats) use ``easy="none"`` in the
    strategy. A chat prompt gets the noise in its last user message.

    >>> space_noise("23+45=", 2, random.Random(0)), space_noise("23+45=", 3, random.Random(1))
    ('23+45  =', ' 23 + 45=')
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")

    def insert(text: str) -> str:
        places = noise_positions(text)
        if not places or count == 0:
            return text
        chosen = sorted((rng.choice(places) for _ in range(count)), reverse=True)
        for i in chosen:  # from the end, so earlier positions stay valid
            text = text[:i] + " " + text[i:]
        return text

    return map_prompt_text(prompt, insert)
