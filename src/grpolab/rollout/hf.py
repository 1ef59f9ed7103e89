"""The ``hf`` rollout engine: batched sampling with transformers' ``generate`` and its KV cache.

All P prompts × G samples are generated as one left-padded batch. Chat prompts (lists of messages) go through
the tokenizer's chat template. A completion ends at EOS (kept, so the model learns to stop), at a stop string,
or at ``max_new_tokens`` (then ``truncated``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grpolab.models.cache import cache_argument


class DecodedStop:
    """A generation stopping criterion for stop strings that decodes the tail of each row and looks for them: the
    fallback for tokenizers transformers' own ``stop_strings`` matcher cannot read (a character vocabulary without
    letters). Returns bool [N]: True for rows whose new tokens contain a stop string within their last
    ``max(len(s)) + 4`` tokens (every token writes at least one character in the vocabularies that need it).

    - ``stop``: the stop strings; ``prompt_len``: the width of the (left-padded) prompt part of ``input_ids``.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_len = prompt_len
        self.window = max((len(s) for s in self.stop), default=0) + 4

    def __call__(self, input_ids: Tensor, scores: Any = None, **kwargs: Any) -> Tensor:
        tail = input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window) :]  # [N, <= window]
        texts = self.tokenizer.batch_decode(tail, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], dtype=torch.bool, device=input_ids.device)


@dataclass
class Generation:
    """Completions of a batch of prompts; row i belongs to prompt ``prompt_index[i]``."""

    prompt_ids: Tensor  # [N, Lp] left-padded
    prompt_mask: Tensor  # [N, Lp] bool
    completion_ids: Tensor  # [N, T] right-padded
    completion_mask: Tensor  # [N, T] bool: generated tokens up to and including EOS / the stop string
    truncated: Tensor  # [N] bool: hit max_new_tokens without EOS or stop string
    texts: list[str]  # N decoded completions (special tokens removed)
    prompt_index: Tensor  # [N] long

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def take(self, index: Tensor) -> Generation:
        """The rows ``index`` (long [M]) in that order."""
        index = index.to(self.completion_ids.device)
        return Generation(
            prompt_ids=self.prompt_ids[index],
            prompt_mask=self.prompt_mask[index],
            completion_ids=self.completion_ids[index],
            completion_mask=self.completion_mask[index],
            truncated=self.truncated[index],
            texts=[self.texts[i] for i in index.tolist()],
            prompt_index=self.prompt_index[index],
        )

    @staticmethod
    def from_token_lists(
        token_lists: Sequence[Sequence[int]],
        *,
        prompt_ids: Tensor,
        prompt_mask: Tensor,
        prompt_index: Tensor,
        pad_id: int,
        truncated: Tensor | Sequence[bool],
        texts: list[str],
    ) -> Generation:
        """Completions given as token-id lists (not sampled: reference answers, roll-in sources), right-padded with
        ``pad_id`` into a Generation on the device of ``prompt_ids``.

        ``prompt_ids`` / ``prompt_mask`` [M, Lp] (left-padded) and ``prompt_index`` long [M] are those of each
        completion's prompt; ``truncated`` bool [M] marks completions cut at the generation limit (no EOS);
        ``texts`` are the M decoded completions. Every list needs at least one token (a completion always has
        one, as ``HFEngine`` writes them).

        >>> import torch
        >>> g = Generation.from_token_lists([[5, 2], [7]], prompt_ids=torch.ones(2, 1, dtype=torch.long),
        ...     prompt_mask=torch.ones(2, 1, dtype=torch.bool), prompt_index=torch.tensor([0, 1]), pad_id=0,
        ...     truncated=[False, True], texts=["5", "7"])
        >>> g.completion_ids.tolist(), g.completion_mask.tolist()
        ([[5, 2], [7, 0]], [[True, True], [True, False]])
        """
        M = len(token_lists)
        sizes = {
            "prompt_ids": prompt_ids.shape[0],
            "prompt_mask": prompt_mask.shape[0],
            "prompt_index": prompt_index.shape[0],
            "truncated": len(truncated),
            "texts": len(texts),
        }
        wrong = {k: v for k, v in sizes.items() if v != M}
        if wrong:
            raise ValueError(f"Generation.from_token_lists: {M} token lists but these sizes differ: {wrong}")
        if M == 0 or any(len(ids) == 0 for ids in token_lists):
            raise ValueError("Generation.from_token_lists needs at least one completion, each of at least one token")
        device = prompt_ids.device
        T = max(len(ids) for ids in token_lists)
        completion = torch.full((M, T), pad_id, dtype=torch.long, device=device)  # [M, T] right-padded
        completion_mask = torch.zeros(M, T, dtype=torch.bool, device=device)  # [M, T]
        for m, ids in enumerate(token_lists):
            completion[m, : len(ids)] = torch.tensor(list(ids), dtype=torch.long, device=device)
            completion_mask[m, : len(ids)] = True
        return Generation(
            prompt_ids=prompt_ids,  # [M, Lp]
            prompt_mask=prompt_mask,  # [M, Lp]
            completion_ids=completion,  # [M, T]
            completion_mask=completion_mask,  # [M, T]
            truncated=torch.as_tensor(truncated, dtype=torch.bool, device=device),  # [M]
            texts=list(texts),
            prompt_index=prompt_index.to(device),  # [M]
        )

    @staticmethod
    def cat(parts: list[Generation], pad_id: int) -> Generation:
        """Rows of several generations stacked (prompts re-padded on the left, completions on the right);
        ``prompt_index`` values are kept, so all parts must index the same prompt rows."""
        if not parts:
            raise ValueError("Generation.cat needs at least one generation")
        Lp = max(g.prompt_ids.shape[1] for g in parts)
        T = max(g.completion_ids.shape[1] for g in parts)

        def pad(x: Tensor, width: int, left: bool, value: int | bool) -> Tensor:
            extra = width - x.shape[1]
            if extra == 0:
                return x
            fill = torch.full((x.shape[0], extra), value, dtype=x.dtype, device=x.device)  # [N, extra]
            return torch.cat([fill, x] if left else [x, fill], dim=1)

        return Generation(
            prompt_ids=torch.cat([pad(g.prompt_ids, Lp, True, pad_id) for g in parts]),  # [N, Lp]
            prompt_mask=torch.cat([pad(g.prompt_mask, Lp, True, False) for g in parts]),  # [N, Lp]
            completion_ids=torch.cat([pad(g.completion_ids, T, False, pad_id) for g in parts]),  # [N, T]
            completion_mask=torch.cat([pad(g.completion_mask, T, False, False) for g in parts]),  # [N, T]
            truncated=torch.cat([g.truncated for g in parts]),  # [N]
            texts=[t for g in parts for t in g.texts],
            prompt_index=torch.cat([g.prompt_index for g in parts]),  # [N]
        )


class HFEngine:
    """Sampling with ``model.generate``.

    Args:
        tokenizer: a Hugging Face tokenizer with ``eos_token_id`` (and a pad token or EOS used as pad).
        max_new_tokens: generation limit per completion.
        temperature: sampling temperature (0 = greedy).
        top_p, top_k: nucleus / top-k truncation (1.0 / 0 = off).
        stop: strings that end a completion besides EOS.
        share_prefill: encode each distinct prompt once and copy its KV cache to its G samples (exact; saves the
            repeated prompt work when prompts are long against completions).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        stop: list[str] | None = None,
        share_prefill: bool = True,
    ) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; completions could never end")
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.stop = list(stop or [])
        self.share_prefill = share_prefill
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # transformers' stop-string matcher reads each vocabulary token after the probe "abcdef"; a vocabulary that
        # cannot write it (the arithmetic character tokenizer) gets the decode-and-compare criterion instead
        probe = tokenizer("abcdef", add_special_tokens=False).input_ids
        self._hf_stop_strings = tokenizer.unk_token_id is None or tokenizer.unk_token_id not in probe

    def encode(self, prompts: list[Any]) -> tuple[Tensor, Tensor]:
        """Left-padded prompt ids [P, Lp] and mask [P, Lp]; chat prompts use the chat template."""
        texts = [
            self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            if isinstance(p, list)
            else p
            for p in prompts
        ]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            # a chat template writes its own BOS and role markers: do not add special tokens a second time
            chat = any(isinstance(p, list) for p in prompts)
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
        finally:
            self.tokenizer.padding_side = side
        return batch["input_ids"], batch["attention_mask"].bool()

    @torch.no_grad()
    def generate(
        self,
        model: Any,
        prompts: list[Any],
        *,
        num_generations: int | Sequence[int],
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation:
        """G completions of each prompt, sampled together (or greedy decodes when ``greedy``). ``num_generations``
        is one G for every prompt or one per prompt (groups of unequal size).

        ``temperature`` and ``max_new_tokens`` override the engine's settings for this call."""
        unique_ids, unique_mask = self.encode(prompts)  # [P, Lp]
        device = next(model.parameters()).device
        return self.generate_ids(
            model,
            unique_ids.to(device),
            unique_mask.to(device),
            num_generations=num_generations,
            greedy=greedy,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
        )

    @torch.no_grad()
    def generate_ids(
        self,
        model: Any,
        unique_ids: Tensor,
        unique_mask: Tensor,
        *,
        num_generations: int | Sequence[int],
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Generation:
        """Like :meth:`generate` from already encoded, left-padded prompts [P, Lp]; ``prompt_index`` is 0..P-1.
        ``stop`` replaces the engine's stop strings for this call (multi-turn rollouts stop at tool calls)."""
        temperature = self.temperature if temperature is None else temperature
        stop = self.stop if stop is None else list(stop)
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        if limit < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {limit}")
        device = unique_ids.device
        P = unique_ids.shape[0]
        counts = torch.as_tensor(num_generations, dtype=torch.long, device=device).expand(P)  # [P]
        if bool((counts < 1).any()):
            raise ValueError(f"num_generations must be >= 1 for every prompt, got {counts.tolist()}")
        source = torch.arange(P, device=device).repeat_interleave(counts)  # [N]: the prompt of each row
        prompt_ids = unique_ids[source]  # [N, Lp]
        prompt_mask = unique_mask[source]  # [N, Lp]
        sample = not greedy and temperature > 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=limit,
            do_sample=sample,
            pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        if sample:
            kwargs.update(temperature=temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop and self._hf_stop_strings:
            kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        elif stop:
            kwargs.update(stopping_criteria=[DecodedStop(self.tokenizer, stop, prompt_ids.shape[1])])
        was_training = model.training
        model.eval()
        if self.share_prefill and len(source) > P and prompt_ids.shape[1] > 1:
            kwargs[cache_argument(model)] = self._prefill(model, unique_ids, unique_mask, source)
        out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask.long(), **kwargs)  # [N, Lp + T']
        model.train(was_training)
        completion = out[:, prompt_ids.shape[1] :]  # [N, T']
        if completion.shape[1] == 0:  # cannot happen with max_new_tokens >= 1, kept for clarity of shapes
            raise RuntimeError("generate returned no new tokens")
        mask, ended = self._completion_mask(completion)  # [N, T'], [N]
        texts = self.decode(completion, mask)
        stopped = torch.tensor([any(s in t for s in stop) for t in texts], dtype=torch.bool, device=device)
        truncated = ~ended & ~stopped & (mask.sum(-1) >= limit)  # [N]
        return Generation(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completion,
            completion_mask=mask,
            truncated=truncated,
            texts=texts,
            prompt_index=source,  # [N]
        )

    def decode(self, completion: Tensor, mask: Tensor) -> list[str]:
        """Texts of right-padded completions [N, T] (special tokens removed)."""
        return self.tokenizer.batch_decode(torch.where(mask, completion, self.pad_id), skip_special_tokens=True)

    @torch.no_grad()
    def continue_from(
        self,
        model: Any,
        gen: Generation,
        index: Tensor,
        cut: Tensor,
        *,
        num_generations: int,
        suffix_ids: list[int] | None = None,
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[Generation, Tensor]:
        """Continue completions of ``gen`` from a prefix: row ``index[m]`` cut after ``cut[m]`` of its tokens,
        followed by the fixed tokens ``suffix_ids`` (e.g. the ids of "</think>"), ``num_generations`` times each.

        Returns the continued completions as full completions of the *original* prompts (prefix + suffix + new
        tokens, so they can join the batch and be scored as whole texts) and ``prefix_len`` long [M·n]: how many
        of their tokens were given rather than sampled (a loss should usually mask those). ``prompt_index`` is
        that of the source rows. Needs ``1 <= cut[m] <= length of row index[m]`` or cut 0 (no prefix)."""
        device = gen.completion_ids.device
        index, cut = index.to(device).long(), cut.to(device).long()  # [M], [M]
        lengths = gen.completion_mask.sum(-1)[index]  # [M]
        if bool((cut < 0).any()) or bool((cut > lengths).any()):
            raise ValueError("continue_from: each cut must lie in 0..length of its completion")
        suffix = torch.tensor(list(suffix_ids or []), dtype=torch.long, device=device)  # [S]
        rows = []
        for i, c in zip(index.tolist(), cut.tolist(), strict=True):
            prompt = gen.prompt_ids[i][gen.prompt_mask[i]]  # [Lp_i]
            rows.append(torch.cat([prompt, gen.completion_ids[i, :c], suffix]))  # [Lp_i + c + S]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long, device=device)  # [M, W] left-padded
        attn = torch.zeros(len(rows), width, dtype=torch.bool, device=device)  # [M, W]
        for m, r in enumerate(rows):
            ids[m, width - len(r) :] = r
            attn[m, width - len(r) :] = True
        new = self.generate_ids(
            model,
            ids,
            attn,
            num_generations=num_generations,
            greedy=greedy,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
        )
        src = index.repeat_interleave(num_generations)  # [N]
        given = cut.repeat_interleave(num_generations) + len(suffix)  # [N]
        new_len = new.completion_mask.sum(-1)  # [N]
        total = given + new_len  # [N]
        T = int(total.max())
        completion = torch.full((len(src), T), self.pad_id, dtype=torch.long, device=device)  # [N, T]
        for n, (s, g, k) in enumerate(zip(src.tolist(), given.tolist(), new_len.tolist(), strict=True)):
            c = g - len(suffix)
            completion[n, :c] = gen.completion_ids[s, :c]
            completion[n, c:g] = suffix
            completion[n, g : g + k] = new.completion_ids[n, :k]
        mask = torch.arange(T, device=device)[None, :] < total[:, None]  # [N, T]
        out = Generation(
            prompt_ids=gen.prompt_ids[src],
            prompt_mask=gen.prompt_mask[src],
            completion_ids=completion,
            completion_mask=mask,
            truncated=new.truncated,
            texts=self.decode(completion, mask),
            prompt_index=gen.prompt_index[src],
        )
        return out, given

    @staticmethod
    def _prefill(model: Any, ids: Tensor, mask: Tensor, source: Tensor) -> Any:
        """The KV cache of each distinct prompt but its last token, computed once and copied to its samples
        (``source`` long [N]: the prompt of each row); ``generate`` then runs only the last prompt token and the new
        ones per sample."""
        from transformers import DynamicCache

        cache = DynamicCache(config=getattr(model, "config", None))
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # [P, Lp]
        model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1].long(),
            position_ids=positions[:, :-1],
            use_cache=True,
            logits_to_keep=1,
            **{cache_argument(model): cache},
        )
        cache.batch_select_indices(source)  # [P, ...] -> [N, ...]: row n holds the cache of prompt source[n]
        return cache

    def _completion_mask(self, completion: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens up to and including the first EOS; padding after an early stop is excluded."""
        is_eos = completion == self.tokenizer.eos_token_id  # [N, T]
        before_end = (torch.cumsum(is_eos.long(), dim=1) - is_eos.long()) == 0  # [N, T]: up to the first EOS
        mask = before_end
        if self.pad_id != self.tokenizer.eos_token_id:
            # generate pads rows that stopped early (stop strings): drop the trailing run of pad tokens only, so a
            # pad token the model sampled mid-completion stays in (an EOS row is already cut at its EOS)
            not_pad = completion != self.pad_id  # [N, T]
            mask = mask & (not_pad.flip(1).long().cumsum(1).flip(1) > 0)  # [N, T]
        mask[:, 0] = True  # a completion always has its first token (possibly EOS itself)
        return mask, is_eos.any(dim=1)
