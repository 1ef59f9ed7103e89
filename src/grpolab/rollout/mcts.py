"""MedS³-style process rewards (arXiv 2501.12051): MCTS over reasoning steps, a PRM trained on the node values,
and PRM step rewards for every completion of the batch.

``mcts_prm`` (ROLLOUT_STRATEGIES), every ``search_every`` steps:

1. **Search.** A small Monte-Carlo Tree Search over *steps* (a step ends at a delimiter token, e.g. ``","`` /
   ``")"`` in ``arith_think``'s ``"(7+5=12,20+40=60)72"``, or at the end of the completion) on ``search_prompts``
   prompts of the batch, all trees advanced together so that each iteration costs two batched generation calls:
   selection by UCT (:func:`grpolab.core.prm.select_leaf`), expansion of the selected leaf by ``expand``
   continuations sampled from its prefix (``ctx.continue_from``; each continuation's first new step is a child,
   identical steps merge, and the rest of the continuation is already one simulation of that child), simulation
   of every new child by ``rollouts − 1`` more continuations to the end, verification of each simulated completion
   with the task's accuracy (``ctx.continue_from`` scores them), and back-up (:func:`grpolab.core.prm.backup`):
   a node's value is the fraction of the simulated completions through it that reach the verified answer. The G
   completions of the batch seed each root's first expansion for free.
2. **PRM labels.** Every root-to-leaf path of the trees becomes a PRM example: the prompt and the path's tokens,
   labelled at each step end with the soft dual-sided target of that step
   (:func:`grpolab.core.prm.dual_sided_targets`). Examples go to a bounded FIFO buffer in the part's ``state``.
3. **PRM training.** ``prm_updates`` Adam steps on random mini-batches of the buffer
   (:func:`grpolab.core.prm.prm_loss`).

Every step (searched or not) the PRM scores every completion of the batch step by step: ``extras["step_rewards"]``
float [N, T] holds ``sigmoid(logit)`` on the last token of each step (0 elsewhere) and ``extras["step_end"]`` bool
[N, T] marks those tokens; the ADVANTAGES entry ``"process"`` turns them into advantages. Until the PRM has had a
label (with ``contrast``, a tree needs a verified and a failed completion), every step scores 0.5: the group
normalisation then makes the process term 0 and the update is GRPO's, not noise from an untrained PRM.

The PRM (``prm_model``): by default a small MLP head (Linear, tanh, Linear; hidden 32) on the *current policy's*
last hidden state at each token plus three confidence features of the prefix (the policy's token log-probability
and its running minimum and mean over the completion), computed without gradient whenever the PRM scores or
trains (they follow the policy as it learns; only the head is trained, so the policy is never modified). MedS³'s
PRM is the policy's backbone with a token-classification head, fine-tuned offline with LoRA; re-training a copy of
the policy at every search would dominate the cost, and a head on the frozen features keeps what the policy
knows. ``prm_model="tiny"`` is a separate ``LlamaForTokenClassification`` (hidden 32, 1 layer, about 11k
parameters with the character tokenizer) over the policy's tokenizer, trained from scratch: independent of the
policy, but on ``arith_think`` it did not learn to tell right from wrong completions of a question within 20
searches (``docs/process_rewards.md``). Either way the PRM reads the prompt and the completion, so a step's score
depends on the question and the steps before it. Its weights, its Adam state and the label buffer live in the
part's ``state`` dict, so checkpoints carry them and a resumed run continues identically; its initialisation uses
its own seed and leaves the global random state untouched.

The search's continuations join the batch only when ``append_verified > 0``: then up to that many distinct
verified completions found by the search are added to each searched prompt's group (MedS³ fine-tunes the policy
on its verified trajectories). Their tokens were all sampled by the current policy within this step, so they are
on-policy (``prefix_len`` 0) and every token trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from grpolab.core.checks import check_choice, check_int, check_number
from grpolab.core.prm import (
    PRM_LOSSES,
    SCORE_REDUCTIONS,
    backup,
    best_of_n,
    completed_nodes,
    completion_scores,
    dual_sided_targets,
    first_step_end,
    node_values,
    prm_loss,
    select_leaf,
    step_ends,
    vote_sum,
)
from grpolab.rollout.hf import Generation
from grpolab.rollout.strategies import (
    ROLLOUT_STRATEGIES,
    RolloutContext,
    Sampled,
    check_fillable_extras,
    cut_to_limit,
)

#: Keys of the part's ``state`` (checkpointed): PRM weights and Adam state (CPU tensors), the label buffer
#: (lists of token ids, step-end positions and targets), and counters.
BUFFER_KEYS = ("prompt", "completion", "ends", "targets")
#: PRM kinds: an MLP head on the policy's last hidden states, or a separate tiny Llama (``ProcessRewardModel``).
PRM_MODELS = ("policy_head", "tiny")
#: Confidence features the policy head adds to the hidden state (token log-prob, running min and mean of them).
CONFIDENCE_FEATURES = 3
#: Positions per chunk when the policy head computes token log-probs (bounds the [M, chunk, V] logits).
LOGIT_CHUNK = 256


# ---------------------------------------------------------------------------------------------- the PRM
class ProcessRewardModel:
    """The PRM of ``mcts_prm`` and its Adam optimizer, rebuilt from (and saved to) the part's ``state`` dict on every
    call. Two kinds (``kind``):

    - ``"policy_head"``: a small MLP (Linear, tanh, Linear) on the *current policy's* last hidden states, which are
      computed without gradient for every scoring and every PRM update (never stored, so they follow the policy as
      it trains). Only the head is trained. MedS³ initialises its PRM from the policy's backbone; this keeps that
      knowledge (here: the arithmetic the policy already knows) at the cost of one policy forward pass.
    - ``"tiny"``: a separate tiny token-classification Llama over the policy's tokenizer, trained from scratch.

    ``logits(prompts, completions)`` gives one logit per completion token (the score of the prefix ending there);
    ``update(...)`` takes optimizer steps on buffered labels. Inputs are the unpadded prompt ids followed by the
    completion ids, right padded, positions 0.. per row; training and scoring use the same layout.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        kind: str,
        policy: Any,
        pad_id: int,
        device: torch.device,
        state: dict[str, Any],
        hidden: int,
        layers: int,
        heads: int,
        lr: float,
        seed: int,
    ) -> None:
        check_choice("mcts_prm", "prm_model", kind, PRM_MODELS)
        self.kind, self.policy = kind, policy
        with torch.random.fork_rng(devices=[]):  # the PRM's own initialisation: the run's random stream is untouched
            torch.manual_seed(seed)
            if kind == "tiny":
                from transformers import LlamaForTokenClassification

                from grpolab.models import tiny_llama_config

                config = tiny_llama_config(tokenizer, hidden=hidden, layers=layers, heads=heads, max_positions=2048)
                config.num_labels = 1
                self.model: torch.nn.Module = LlamaForTokenClassification(config)
            else:
                width = policy.get_input_embeddings().embedding_dim + CONFIDENCE_FEATURES
                self.model = torch.nn.Sequential(
                    torch.nn.Linear(width, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
                )
        self.model.to(device)
        if "prm" in state:
            self.model.load_state_dict(state["prm"])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        if "opt" in state:
            self.optimizer.load_state_dict(state["opt"])
        self.pad_id = pad_id
        self.device = device

    def save(self, state: dict[str, Any]) -> None:
        """Write the weights and the optimizer state into ``state`` (CPU copies)."""
        state["prm"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        state["opt"] = _to_cpu(self.optimizer.state_dict())

    def _inputs(
        self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(ids, attn, positions [M, L], plen, clen [M])``: prompt then completion ids, right padded."""
        M = len(prompts)
        plen = torch.tensor([len(p) for p in prompts], device=self.device)  # [M]
        clen = torch.tensor([len(c) for c in completions], device=self.device)  # [M]
        L = int((plen + clen).max())
        ids = torch.full((M, L), self.pad_id, dtype=torch.long, device=self.device)  # [M, L] right padded
        for m, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            ids[m, : len(p) + len(c)] = torch.tensor([*p, *c], dtype=torch.long, device=self.device)
        attn = torch.arange(L, device=self.device)[None, :] < (plen + clen)[:, None]  # [M, L]
        positions = torch.arange(L, device=self.device)[None, :].expand(M, L)  # [M, L]
        return ids, attn, positions, plen, clen

    def logits(self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> Tensor:
        """Logits [M, Tc] at the completion tokens (Tc the longest completion; 0 past a row's end), with gradient
        for the PRM's own parameters."""
        ids, attn, positions, plen, clen = self._inputs(prompts, completions)
        L = ids.shape[1]
        if self.kind == "tiny":
            out = self.model(input_ids=ids, attention_mask=attn.long(), position_ids=positions).logits[..., 0]  # [M, L]
        else:
            out = self.model(self._features(ids, attn, positions, plen))[..., 0]  # [M, L]
        Tc = max(1, int(clen.max()))
        at = (plen[:, None] + torch.arange(Tc, device=self.device)[None, :]).clamp(max=L - 1)  # [M, Tc]
        logits = out.gather(1, at)  # [M, Tc]
        valid = torch.arange(Tc, device=self.device)[None, :] < clen[:, None]  # [M, Tc]
        return torch.where(valid, logits, torch.zeros_like(logits))  # [M, Tc]

    def _end_features(self, buffer: dict[str, list], chunk: int) -> list[Tensor]:
        """The policy head's input at every labelled step end of every buffered path, ``[k_i, F]`` per path: the
        policy is fixed during an update, so its forward pass runs once per search (in chunks of ``chunk`` paths),
        not once per optimizer step. The head is applied token by token, so training on these rows equals training
        on the full sequences."""
        out: list[Tensor] = []
        n = len(buffer["prompt"])
        for start in range(0, n, chunk):
            rows = range(start, min(n, start + chunk))
            ids, attn, positions, plen, _ = self._inputs(
                [buffer["prompt"][i] for i in rows], [buffer["completion"][i] for i in rows]
            )
            feats = self._features(ids, attn, positions, plen)  # [m, L, F]
            for m, i in enumerate(rows):
                at = plen[m] + torch.tensor(buffer["ends"][i], dtype=torch.long, device=self.device)  # [k_i]
                out.append(feats[m, at])  # [k_i, F]
        return out

    @torch.no_grad()
    def _features(self, ids: Tensor, attn: Tensor, positions: Tensor, plen: Tensor) -> Tensor:
        """Per position: the current policy's last hidden state and its confidence in the completion so far, float32
        [M, L, H + 3], no gradient, eval mode.

        Confidence features (functions of the prefix, like the hidden state): the policy's log-probability of the
        token at this position (temperature 1), and the minimum and the mean of those log-probabilities over the
        completion tokens up to here (0 on prompt positions). The hidden state alone did not separate right from
        wrong completions of one question after 20 searches on arith_think, while the policy's own mean token
        log-probability does (within-question AUC 0.75 for the SFT'd tiny-arith; docs/process_rewards.md)."""
        was_training = self.policy.training
        self.policy.eval()
        try:
            out = self.policy(
                input_ids=ids,
                attention_mask=attn.long(),
                position_ids=positions,
                output_hidden_states=True,
                use_cache=False,
                logits_to_keep=1,  # token log-probs come from the output head below, in chunks
            )
        finally:
            self.policy.train(was_training)
        hidden = out.hidden_states[-1]  # [M, L, H] (after the final norm: what the output head reads)
        head = self.policy.get_output_embeddings()
        M, L = ids.shape
        logp = torch.zeros(M, L, dtype=torch.float32, device=ids.device)  # [M, L]
        for start in range(0, L - 1, LOGIT_CHUNK):  # position t is predicted from t - 1
            stop = min(L - 1, start + LOGIT_CHUNK)
            logits = head(hidden[:, start:stop]).float()  # [M, c, V]
            tok = ids[:, start + 1 : stop + 1, None]  # [M, c, 1]
            logp[:, start + 1 : stop + 1] = torch.log_softmax(logits, dim=-1).gather(-1, tok)[..., 0]
        t = torch.arange(L, device=ids.device)[None, :]  # [1, L]
        comp = (t >= plen[:, None]) & attn  # [M, L] completion tokens
        lp = torch.where(comp, logp, torch.zeros_like(logp))  # [M, L]
        run_min = torch.where(comp, lp, torch.full_like(lp, math.inf)).cummin(dim=1).values  # [M, L]
        run_min = torch.where(comp, run_min, torch.zeros_like(run_min))  # [M, L]
        count = comp.long().cumsum(dim=1).clamp(min=1)  # [M, L]
        run_mean = lp.cumsum(dim=1) / count  # [M, L]
        conf = torch.stack([lp, run_min, run_mean], dim=-1)  # [M, L, 3]
        return torch.cat([hidden.float(), conf], dim=-1)  # [M, L, H + 3]

    def update(
        self, buffer: dict[str, list], *, updates: int, batch_size: int, loss: str, cache_features: bool = True
    ) -> float:
        """``updates`` Adam steps on random mini-batches of the buffer; returns the mean loss (NaN without labels).
        ``cache_features`` (policy head): compute the policy's features once for all the updates (the same result
        as a policy forward pass per mini-batch, at a fraction of the cost)."""
        n = len(buffer["prompt"])
        if n == 0 or updates == 0:
            return math.nan
        self.model.train()
        feats = self._end_features(buffer, batch_size) if self.kind == "policy_head" and cache_features else None
        losses = []
        for _ in range(updates):
            pick = torch.randperm(n)[: min(batch_size, n)].tolist()  # the run's random stream (checkpointed)
            if feats is not None:  # the head on the stored features of the picked paths' step ends
                logits = self.model(torch.cat([feats[i] for i in pick]))[None, :, 0]  # [1, K]
                targets = torch.tensor(
                    [y for i in pick for y in buffer["targets"][i]], dtype=logits.dtype, device=self.device
                )[None, :]  # [1, K]
                label = torch.ones(logits.shape, dtype=torch.bool, device=self.device)  # [1, K]
            else:
                logits = self.logits([buffer["prompt"][i] for i in pick], [buffer["completion"][i] for i in pick])
                targets = torch.zeros_like(logits)  # [b, Tc]
                label = torch.zeros(logits.shape, dtype=torch.bool, device=self.device)  # [b, Tc]
                for row, i in enumerate(pick):
                    ends = torch.tensor(buffer["ends"][i], dtype=torch.long, device=self.device)
                    targets[row, ends] = torch.tensor(buffer["targets"][i], dtype=targets.dtype, device=self.device)
                    label[row, ends] = True
            value = prm_loss(logits, targets, label, loss=loss)
            self.optimizer.zero_grad(set_to_none=True)
            value.backward()
            self.optimizer.step()
            losses.append(value.item())
        self.model.eval()
        return sum(losses) / len(losses)

    @torch.no_grad()
    def score(self, gen: Generation) -> Tensor:
        """PRM probabilities ``sigmoid(logit)`` [N, T] at every completion token of ``gen`` (0 at padding)."""
        self.model.eval()
        mask = gen.completion_mask  # [N, T]
        prompts = [gen.prompt_ids[i][gen.prompt_mask[i]].tolist() for i in range(mask.shape[0])]
        comps = [gen.completion_ids[i][mask[i]].tolist() for i in range(mask.shape[0])]
        logits = self.logits(prompts, comps)  # [N, Tc] (completions are left-aligned: Tc <= T)
        probs = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)  # [N, T]
        probs[:, : logits.shape[1]] = torch.sigmoid(logits.float()).to(mask.device)
        return torch.where(mask, probs, torch.zeros_like(probs))  # [N, T]


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------- the search tree
@dataclass
class SearchTree:
    """One prompt's search tree, nodes in creation order (node 0 the root: the prompt, no step).

    ``path[n]`` holds the completion tokens from the start through node n's step; ``terminal[n]``: the step ended
    the completion (EOS or the length limit); ``expanded[n]``: children were sampled from it.
    """

    prompt: int
    parent: list[int] = field(default_factory=lambda: [-1])
    path: list[list[int]] = field(default_factory=lambda: [[]])
    terminal: list[bool] = field(default_factory=lambda: [False])
    expanded: list[bool] = field(default_factory=lambda: [False])
    children: list[dict[tuple[int, ...], int]] = field(default_factory=lambda: [{}])
    wins: Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.float64))
    sims: Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.float64))

    @property
    def size(self) -> int:
        return len(self.parent)

    def child(self, node: int, step: list[int], terminal: bool) -> tuple[int, bool]:
        """The child of ``node`` whose step is ``step`` (merged with an identical one): ``(id, created)``."""
        key = tuple(step)
        if key in self.children[node]:
            return self.children[node][key], False
        new = self.size
        self.children[node][key] = new
        self.parent.append(node)
        self.path.append([*self.path[node], *step])
        self.terminal.append(terminal)
        self.expanded.append(False)
        self.children.append({})
        self.wins = torch.cat([self.wins, self.wins.new_zeros(1)])
        self.sims = torch.cat([self.sims, self.sims.new_zeros(1)])
        return new, True

    def backup(self, node: list[int], outcome: list[float]) -> None:
        if node:
            parent = torch.tensor(self.parent)  # [N]
            self.wins, self.sims = backup(
                parent, self.wins, self.sims, torch.tensor(node), torch.tensor(outcome, dtype=torch.float64)
            )

    def select(self, *, c: float) -> int:
        parent = torch.tensor(self.parent)  # [N]
        done = completed_nodes(parent, torch.tensor(self.terminal), torch.tensor(self.expanded))  # [N]
        return select_leaf(parent, self.wins, self.sims, done, c=c)

    def depth(self, node: int) -> int:
        d = 0
        while self.parent[node] >= 0:
            node, d = self.parent[node], d + 1
        return d

    def examples(
        self, *, look_back: float, complete_only: bool = True, contrast: bool = True
    ) -> list[tuple[list[int], list[int], list[float]]]:
        """PRM examples, one per root-to-leaf path: ``(completion tokens, step-end positions, dual-sided targets)``.

        ``complete_only``: only paths to terminal leaves (whole completions whose last step is verified), as
        MedS³'s ``collect_all_complete_paths``. ``contrast``: none unless the tree holds both a verified (value >=
        0.5) and a failed (< 0.5) terminal path, as its released PRM run (``--filter_invalid True``: questions
        without both correct and incorrect trajectories are dropped), so that the PRM learns to tell steps of one
        question apart rather than easy questions from hard ones."""
        values = node_values(self.wins, self.sims)  # [N]
        leaves = [n for n in range(1, self.size) if not self.children[n] and (self.terminal[n] or not complete_only)]
        final = [float(values[n]) for n in leaves if self.terminal[n]]
        if contrast and not (any(v >= 0.5 for v in final) and any(v < 0.5 for v in final)):
            return []
        out = []
        for leaf in leaves:
            chain, n = [], leaf
            while n > 0:
                chain.append(n)
                n = self.parent[n]
            chain.reverse()
            idx = torch.tensor(chain)
            par = torch.tensor([self.parent[k] for k in chain])
            targets = dual_sided_targets(values[idx], values[par], look_back=look_back)  # [d]
            ends = [len(self.path[k]) - 1 for k in chain]
            out.append((self.path[leaf], ends, targets.tolist()))
        return out


def _sources(sampled: Sampled, trees: list[SearchTree], nodes: list[int], pad_id: int, rep: dict[int, int]) -> Sampled:
    """A batch whose row m is node ``nodes[m]``'s path in ``trees[m]`` (for ``ctx.continue_from`` after all of it);
    the root's empty path is one placeholder token continued from cut 0."""
    gen0, device = sampled.gen, sampled.gen.completion_ids.device
    rows = torch.tensor([rep[t.prompt] for t in trees], dtype=torch.long, device=device)  # [M]
    paths = [t.path[n] or [pad_id] for t, n in zip(trees, nodes, strict=True)]
    M = len(paths)
    gen = Generation.from_token_lists(
        paths,
        prompt_ids=gen0.prompt_ids[rows],
        prompt_mask=gen0.prompt_mask[rows],
        prompt_index=gen0.prompt_index[rows],
        pad_id=pad_id,
        truncated=[False] * M,
        texts=[""] * M,
    )
    zeros = torch.zeros(M, device=sampled.reward.device)  # [M]
    return Sampled(
        rows=sampled.rows,
        gen=gen,
        reward=zeros,
        rewards=torch.zeros(M, sampled.rewards.shape[1], device=sampled.rewards.device),  # [M, K]
        reward_names=sampled.reward_names,
        valid=torch.ones(M, dtype=torch.bool, device=sampled.reward.device),
        accuracy=zeros,
        group=gen.prompt_index.clone(),
    )


def _delimiter_ids(tokenizer: Any, delimiters: Sequence[str]) -> list[int]:
    ids = []
    for d in delimiters:
        enc = tokenizer(d, add_special_tokens=False)["input_ids"] if isinstance(d, str) and d else []
        if len(enc) != 1 or enc[0] == tokenizer.unk_token_id:
            raise ValueError(
                f"mcts_prm: delimiter {d!r} must be a string the tokenizer encodes as one known token (got ids {enc}); "
                "use the task's step separator, e.g. ',' and ')' for arith_think or '\\n\\n' for chat models"
            )
        ids.append(int(enc[0]))
    return ids


# ---------------------------------------------------------------------------------------------- the strategy
@ROLLOUT_STRATEGIES.register("mcts_prm")
def mcts_prm(
    ctx: RolloutContext,
    sampled: Sampled,
    *,
    max_len: int,
    step: int,
    state: dict,
    delimiters: Sequence[str] = (",", ")"),
    search_every: int = 2,
    search_prompts: int = 2,
    iterations: int = 4,
    expand: int = 3,
    rollouts: int = 4,
    c: float = 2.0,
    look_back: float = 1.0,
    complete_only: bool = True,
    contrast: bool = True,
    buffer_size: int = 256,
    prm_updates: int = 16,
    prm_batch: int = 32,
    prm_lr: float = 1e-3,
    prm_loss_type: str = "bce",
    prm_model: str = "policy_head",
    prm_hidden: int = 32,
    prm_layers: int = 1,
    prm_heads: int = 2,
    prm_seed: int = 0,
    reduce: str = "mean",
    append_verified: int = 0,
) -> tuple[Sampled, dict[str, float]]:
    """MedS³ (arXiv 2501.12051): MCTS over steps every ``search_every`` steps, a PRM trained on the node values, and
    PRM step rewards ``extras["step_rewards"]`` / ``extras["step_end"]`` [N, T] for every completion (module
    docstring). Cost of a search: at most ``2 · iterations`` batched generation calls of at most
    ``search_prompts · expand · rollouts`` continuations each, plus one no-gradient policy forward pass over the
    label buffer and ``prm_updates`` steps of the small PRM head; every step: one PRM forward pass over the batch
    (with the default PRM: one no-gradient policy forward pass).

    Args:
        max_len: the run's generation limit (run argument); continuations obey it (a cut one is scored again).
        step: completed training steps (run argument); a search runs when ``step % search_every == 0`` or the
            PRM has never been trained (fresh run).
        state: the part's checkpointed dict (run argument): PRM weights, Adam state, label buffer, counters.
        delimiters: strings that close a step, each one token of the tokenizer; default ``(",", ")")`` (the steps
            of ``arith_think``); MedS³ separates steps by ``"\\n\\n"``. A completion without one is a single step.
        search_every: search every N steps; default 2 (MedS³ searches offline, once per self-evolution round),
            usually 1 to 10.
        search_prompts: prompts of the batch searched (chosen at random); default 2, usually 1 to 8.
        iterations: MCTS iterations (select, expand, simulate, back up) per search; default 4 (MedS³ grows up to 60
            nodes per question: ``max_nodes`` 60), usually 2 to 16.
        expand: continuations sampled per expansion (children before merging identical steps); MedS³ 3
            (``max_children``), usually 2 to 5.
        rollouts: simulated completions per new node, the expansion's own continuation included; default 4
            (MedS³: ``max(20 // (depth + 1), 5)``), usually 2 to 16.
        c: UCT exploration constant; MedS³ 2.
        look_back: λ of the soft dual-sided target (:func:`grpolab.core.prm.dual_sided_targets`); MedS³'s v4 run
            1.0; 0 gives plain soft value labels.
        complete_only: label only root-to-terminal paths (whole completions), as MedS³'s code; default True.
            False also labels paths to unfinished leaves.
        contrast: label a tree only when it holds both a verified and a failed terminal path (MedS³'s released
            run, ``--filter_invalid True``); default True.
        buffer_size: PRM examples (root-to-leaf paths) kept, oldest dropped first; default 256.
        prm_updates, prm_batch, prm_lr: Adam steps per search, paths per step, learning rate; defaults 16, 32,
            1e-3 (a small head, or a tiny model from scratch; MedS³ fine-tunes an 8B backbone with LoRA at 5e-5).
        prm_loss_type: "bce" (MedS³ v4 run) or "huber" (the code's default).
        prm_model: "policy_head" (default: an MLP head on the current policy's last hidden states and its token
            confidence) or "tiny" (a separate tiny Llama trained from scratch); see :class:`ProcessRewardModel`.
        prm_hidden: width of the head's hidden layer / of the tiny Llama; default 32. prm_layers, prm_heads: layers
            and attention heads of the tiny Llama (defaults 1, 2). prm_seed: the PRM's initialisation seed.
        reduce: completion score for the logged PRM-guided selection metrics ("min", "mean", "prod", "last");
            default "mean" (on arith_think the four separated right from wrong completions about equally).
        append_verified: distinct verified completions found by the search added to each searched prompt's group;
            default 0 (the batch stays the G samples of GRPO).

    Metrics: ``mcts/searched``, ``mcts/nodes`` (nodes per tree), ``mcts/depth`` (deepest node), ``mcts/simulations``
    (continuations sampled), ``mcts/verified_frac`` (of the simulated completions), ``mcts/appended``,
    ``prm/loss``, ``prm/buffer``, ``prm/target_mean``, ``prm/labelled_trees``, ``prm/trained`` (the PRM has had
    labels), ``prm/step_reward_mean``, ``prm/steps`` (per completion),
    and ``prm/vote_sum_acc``, ``prm/best_of_n_acc``, ``prm/majority_acc`` (accuracy of the answer picked per
    prompt of the batch by PRM Vote-Sum, PRM best-of-N and majority vote; the final step is the answer).
    """
    for name, value, low in (
        ("search_every", search_every, 1),
        ("search_prompts", search_prompts, 1),
        ("iterations", iterations, 0),
        ("expand", expand, 1),
        ("rollouts", rollouts, 1),
        ("buffer_size", buffer_size, 1),
        ("prm_updates", prm_updates, 0),
        ("prm_batch", prm_batch, 1),
        ("prm_hidden", prm_hidden, 1),
        ("prm_layers", prm_layers, 1),
        ("prm_heads", prm_heads, 1),
        ("prm_seed", prm_seed, 0),
        ("append_verified", append_verified, 0),
    ):
        check_int(name, value, minimum=low, where="mcts_prm")
    check_number("c", c, minimum=0, where="mcts_prm", hint="MedS³ 2")
    check_number("look_back", look_back, minimum=0, where="mcts_prm", hint="MedS³ 1.0")
    check_number("prm_lr", prm_lr, above=0, where="mcts_prm", hint="default 1e-3")
    check_choice("mcts_prm", "prm_loss_type", prm_loss_type, PRM_LOSSES)
    check_choice("mcts_prm", "prm_model", prm_model, PRM_MODELS)
    check_choice("mcts_prm", "reduce", reduce, SCORE_REDUCTIONS)
    if isinstance(delimiters, str):
        delimiters = (delimiters,)
    delims = _delimiter_ids(ctx.tokenizer, delimiters)
    prm = ProcessRewardModel(
        ctx.tokenizer,
        kind=prm_model,
        policy=ctx.model,
        pad_id=ctx.pad_id,
        device=ctx.device,
        state=state,
        hidden=prm_hidden,
        layers=prm_layers,
        heads=prm_heads,
        lr=prm_lr,
        seed=prm_seed,
    )
    metrics: dict[str, float] = {"mcts/searched": 0.0}
    if step % search_every == 0 or "prm" not in state:
        sampled, searched = _search(
            ctx,
            sampled,
            prm,
            state,
            max_len=max_len,
            delims=delims,
            search_prompts=search_prompts,
            iterations=iterations,
            expand=expand,
            rollouts=rollouts,
            c=c,
            look_back=look_back,
            complete_only=complete_only,
            contrast=contrast,
            buffer_size=buffer_size,
            prm_updates=prm_updates,
            prm_batch=prm_batch,
            prm_loss_type=prm_loss_type,
            append_verified=append_verified,
        )
        metrics.update(searched)
        prm.save(state)
    state["searches"] = int(state.get("searches", 0)) + int(metrics["mcts/searched"])
    metrics["prm/buffer"] = float(len(state.get("buffer", {}).get("prompt", [])))

    # every completion scored step by step by the PRM
    gen = sampled.gen
    mask = gen.completion_mask  # [N, T]
    end = step_ends(gen.completion_ids, mask, delims)  # [N, T]
    # no label yet (no tree held a verified and a failed path): a constant score, so that the process term is 0
    trained = bool(state.get("prm_steps", 0))
    probs = prm.score(gen) if trained else torch.where(mask, 0.5, 0.0).float()  # [N, T]
    metrics["prm/trained"] = float(trained)
    step_rewards = torch.where(end, probs, torch.zeros_like(probs))  # [N, T]
    metrics["prm/step_reward_mean"] = probs[end].mean().item()
    metrics["prm/steps"] = end.sum(-1).float().mean().item()
    metrics.update(_selection_metrics(sampled, step_rewards, end, reduce=reduce))
    extras = {**sampled.extras, "step_rewards": step_rewards, "step_end": end}
    return replace(sampled, extras=extras), metrics


def _search(
    ctx: RolloutContext,
    sampled: Sampled,
    prm: ProcessRewardModel,
    state: dict,
    *,
    max_len: int,
    delims: list[int],
    search_prompts: int,
    iterations: int,
    expand: int,
    rollouts: int,
    c: float,
    look_back: float,
    complete_only: bool,
    contrast: bool,
    buffer_size: int,
    prm_updates: int,
    prm_batch: int,
    prm_loss_type: str,
    append_verified: int,
) -> tuple[Sampled, dict[str, float]]:
    """One search: trees over ``search_prompts`` random prompts of the batch, PRM labels, PRM training."""
    gen = sampled.gen
    index = gen.prompt_index.tolist()
    rep: dict[int, int] = {}
    for row, p in enumerate(index):
        rep.setdefault(p, row)
    prompts = sorted(rep)
    chosen = [prompts[i] for i in torch.randperm(len(prompts))[:search_prompts].tolist()]  # the run's random stream
    trees = [SearchTree(prompt=p) for p in chosen]
    by_prompt = {t.prompt: t for t in trees}
    verified: dict[int, list[tuple[Sampled, int]]] = {p: [] for p in chosen}

    # the batch's own completions seed each root: their first step is a child, the completion one simulation of it
    mask = gen.completion_mask  # [N, T]
    ends = step_ends(gen.completion_ids, mask, delims)  # [N, T]
    first = first_step_end(ends, mask, torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device))  # [N]
    lengths = mask.sum(-1)  # [N]
    seeds: dict[int, tuple[list[int], list[float]]] = {p: ([], []) for p in chosen}
    for row, p in enumerate(index):
        if p not in by_prompt or not bool(sampled.valid[row]):
            continue
        tree = by_prompt[p]
        e = int(first[row])
        node, _ = tree.child(0, gen.completion_ids[row, : e + 1].tolist(), e == int(lengths[row]) - 1)
        seeds[p][0].append(node)
        seeds[p][1].append(float(sampled.accuracy[row]))
        tree.expanded[0] = True
    for tree in trees:
        tree.backup(*seeds[tree.prompt])

    simulations, verified_count, calls = 0, 0.0, 0
    for _ in range(iterations):
        picked = [(t, t.select(c=c)) for t in trees]
        picked = [(t, n) for t, n in picked if n >= 0]
        if not picked:
            break  # every tree is completed
        sel_trees, sel_nodes = [t for t, _ in picked], [n for _, n in picked]
        # expansion: `expand` continuations of every selected leaf, ONE call for all trees
        cont = _continue(ctx, sampled, sel_trees, sel_nodes, expand, max_len, rep)
        calls += 1
        starts = torch.tensor([len(t.path[n]) for t, n in picked], device=mask.device).repeat_interleave(expand)
        new_nodes: list[tuple[SearchTree, int]] = []
        stats = _record(cont, sel_trees, sel_nodes, expand, starts, delims, new_nodes, verified)
        simulations += stats[0]
        verified_count += stats[1]
        for t, n in picked:
            t.expanded[n] = True
        # simulation: rollouts - 1 more completions from every new (non-terminal) child, ONE call
        todo = [(t, n) for t, n in new_nodes if not t.terminal[n]]
        if todo and rollouts > 1:
            sim = _continue(ctx, sampled, [t for t, _ in todo], [n for _, n in todo], rollouts - 1, max_len, rep)
            calls += 1
            outcome = sim.accuracy.float()  # [M * (rollouts - 1)]
            ok = sim.valid  # [M * (rollouts - 1)]
            per_tree: dict[int, tuple[list[int], list[float]]] = {}
            for j in range(sim.size):
                t, n = todo[j // (rollouts - 1)]
                if not bool(ok[j]):
                    continue
                entry = per_tree.setdefault(id(t), ([], []))
                entry[0].append(n)
                entry[1].append(float(outcome[j]))
                if float(outcome[j]) >= 1.0:
                    verified[t.prompt].append((sim, j))
            for t in {id(t): t for t, _ in todo}.values():
                if id(t) in per_tree:
                    t.backup(*per_tree[id(t)])
            simulations += int(ok.sum())
            verified_count += float(outcome[ok].sum())

    # PRM labels from the root-to-leaf paths, into the bounded buffer
    buffer = state.setdefault("buffer", {k: [] for k in BUFFER_KEYS})
    targets: list[float] = []
    labelled = 0
    for tree in trees:
        prompt_ids = gen.prompt_ids[rep[tree.prompt]][gen.prompt_mask[rep[tree.prompt]]].tolist()
        examples = tree.examples(look_back=look_back, complete_only=complete_only, contrast=contrast)
        labelled += bool(examples)
        for completion, step_end_pos, target in examples:
            buffer["prompt"].append(prompt_ids)
            buffer["completion"].append(completion)
            buffer["ends"].append(step_end_pos)
            buffer["targets"].append(target)
            targets += target
    for key in BUFFER_KEYS:
        del buffer[key][: max(0, len(buffer[key]) - buffer_size)]
    loss = prm.update(buffer, updates=prm_updates, batch_size=prm_batch, loss=prm_loss_type)
    if not math.isnan(loss):
        state["prm_steps"] = int(state.get("prm_steps", 0)) + prm_updates

    metrics = {
        "mcts/searched": 1.0,
        "mcts/nodes": sum(t.size - 1 for t in trees) / len(trees),
        "mcts/depth": sum(max(t.depth(n) for n in range(t.size)) for t in trees) / len(trees),
        "mcts/simulations": float(simulations),
        "mcts/generate_calls": float(calls),
        "mcts/verified_frac": verified_count / max(1, simulations),  # of the search's own continuations
        "prm/target_mean": sum(targets) / max(1, len(targets)),
        "prm/labelled_trees": float(labelled),
    }
    if not math.isnan(loss):
        metrics["prm/loss"] = loss
    if append_verified:
        sampled, added = _append_verified(ctx, sampled, verified, append_verified)
        metrics["mcts/appended"] = float(added)
    return sampled, metrics


def _continue(
    ctx: RolloutContext,
    sampled: Sampled,
    trees: list[SearchTree],
    nodes: list[int],
    n: int,
    max_len: int,
    rep: dict[int, int],
) -> Sampled:
    """``n`` scored continuations of every node's path (one ``continue_from`` call), cut to ``max_len`` tokens."""
    src = _sources(sampled, trees, nodes, ctx.pad_id, rep)
    cut = torch.tensor([len(t.path[k]) for t, k in zip(trees, nodes, strict=True)], dtype=torch.long)  # [M]
    index = torch.arange(len(nodes), dtype=torch.long)  # [M]
    cont = ctx.continue_from(src, index, cut, n, max_new_tokens=max_len - int(cut.min()))
    return cut_to_limit(ctx, cont, max_len)


def _record(
    cont: Sampled,
    trees: list[SearchTree],
    nodes: list[int],
    n: int,
    starts: Tensor,
    delims: list[int],
    new_nodes: list[tuple[SearchTree, int]],
    verified: dict[int, list[tuple[Sampled, int]]],
) -> tuple[int, float]:
    """Children from the expansion continuations (their first new step) and their first simulation, backed up."""
    mask = cont.gen.completion_mask  # [M * n, T]
    ids = cont.gen.completion_ids  # [M * n, T]
    end = first_step_end(step_ends(ids, mask, delims), mask, starts.to(mask.device))  # [M * n]
    lengths = mask.sum(-1)  # [M * n]
    per_tree: dict[int, tuple[SearchTree, list[int], list[float]]] = {}
    count, wins = 0, 0.0
    for j in range(cont.size):
        tree, node = trees[j // n], nodes[j // n]
        s, e = int(starts[j]), int(end[j])
        child, created = tree.child(node, ids[j, s : e + 1].tolist(), e == int(lengths[j]) - 1)
        if created:
            new_nodes.append((tree, child))
        if not bool(cont.valid[j]):
            continue
        outcome = float(cont.accuracy[j])
        entry = per_tree.setdefault(id(tree), (tree, [], []))
        entry[1].append(child)
        entry[2].append(outcome)
        count, wins = count + 1, wins + outcome
        if outcome >= 1.0:
            verified[tree.prompt].append((cont, j))
    for tree, node_ids, outcomes in per_tree.values():
        tree.backup(node_ids, outcomes)
    return count, wins


def _append_verified(
    ctx: RolloutContext, sampled: Sampled, verified: dict[int, list[tuple[Sampled, int]]], limit: int
) -> tuple[Sampled, int]:
    """Up to ``limit`` distinct verified search completions per searched prompt, new to its group, appended to the
    batch in that prompt's group (on-policy: every token was sampled by the current policy this step)."""
    check_fillable_extras(sampled, "mcts_prm")
    gen = sampled.gen
    seen: dict[int, set[tuple[int, ...]]] = {}
    group_of: dict[int, int] = {}
    for row, p in enumerate(gen.prompt_index.tolist()):
        seen.setdefault(p, set()).add(tuple(gen.completion_ids[row][gen.completion_mask[row]].tolist()))
        group_of.setdefault(p, int(sampled.group[row]))
    added = 0
    for p, found in verified.items():
        taken = 0
        for cont, j in found:
            if taken >= limit:
                break
            tokens = tuple(cont.gen.completion_ids[j][cont.gen.completion_mask[j]].tolist())
            if tokens in seen[p]:
                continue
            seen[p].add(tokens)
            one = cont.take(torch.tensor([j], device=cont.reward.device))
            group = torch.full_like(one.group, group_of[p])  # [1]
            sampled = sampled.append(replace(one, group=group, extras={}), ctx.pad_id)
            taken += 1
        added += taken
    return sampled, added


def _selection_metrics(sampled: Sampled, step_rewards: Tensor, end: Tensor, *, reduce: str) -> dict[str, float]:
    """Accuracy of the answer each prompt's group would pick by PRM Vote-Sum, PRM best-of-N and majority vote (the
    answer of a completion is its final step's tokens)."""
    valid = sampled.valid  # [N]
    if not bool(valid.any()):
        return {}
    rows = valid.nonzero().flatten()  # [n]
    ids, mask, end_v = sampled.gen.completion_ids[rows], sampled.gen.completion_mask[rows], end[rows]  # [n, T]
    lengths = mask.sum(-1).tolist()
    positions = [torch.nonzero(end_v[i]).flatten().tolist() for i in range(len(rows))]
    answer_ids: dict[tuple[int, ...], int] = {}
    answers = []
    for i, pos in enumerate(positions):
        start = pos[-2] + 1 if len(pos) > 1 else 0
        key = tuple(ids[i, start : lengths[i]].tolist())
        answers.append(answer_ids.setdefault(key, len(answer_ids)))
    answer = torch.tensor(answers, dtype=torch.long, device=ids.device)  # [n]
    group = torch.unique(sampled.group[rows], return_inverse=True)[1]  # [n]: ids 0..P'-1
    scores = completion_scores(step_rewards[rows], end_v, reduce=reduce)  # [n]
    acc = sampled.accuracy[rows].float()  # [n]
    _, _, vs = vote_sum(scores, answer, group)  # [P']
    _, _, mv = vote_sum(torch.ones_like(scores), answer, group)  # [P']
    bo = best_of_n(scores, group)  # [P']
    return {
        "prm/vote_sum_acc": acc[vs].mean().item(),
        "prm/best_of_n_acc": acc[bo].mean().item(),
        "prm/majority_acc": acc[mv].mean().item(),
    }
