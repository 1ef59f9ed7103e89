"""The ``hf`` rollout engine: batched sampling with transformers' ``generate`` and its KV cache.

All P prompts × G samples are generated as one left-padded batch. Chat prompts (lists of messages) go through
the tokenizer's chat template. A completion ends at EOS (kept, so the model learns to stop), at a stop string,
or at ``max_new_tokens`` (then ``truncated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grpolab.models.cache import cache_argument


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
    def generate(self, model: Any, prompts: list[Any], *, num_generations: int, greedy: bool = False) -> Generation:
        """G completions of each prompt, sampled together (or greedy decodes when ``greedy``)."""
        unique_ids, unique_mask = self.encode(prompts)  # [P, Lp]
        device = next(model.parameters()).device
        unique_ids, unique_mask = unique_ids.to(device), unique_mask.to(device)
        prompt_ids = unique_ids.repeat_interleave(num_generations, dim=0)  # [N, Lp]
        prompt_mask = unique_mask.repeat_interleave(num_generations, dim=0)  # [N, Lp]
        sample = not greedy and self.temperature > 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        if sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.stop:
            kwargs.update(stop_strings=self.stop, tokenizer=self.tokenizer)
        was_training = model.training
        model.eval()
        if self.share_prefill and num_generations > 1 and prompt_ids.shape[1] > 1:
            kwargs[cache_argument(model)] = self._prefill(model, unique_ids, unique_mask, num_generations)
        out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask.long(), **kwargs)  # [N, Lp + T']
        model.train(was_training)
        completion = out[:, prompt_ids.shape[1] :]  # [N, T']
        if completion.shape[1] == 0:  # cannot happen with max_new_tokens >= 1, kept for clarity of shapes
            raise RuntimeError("generate returned no new tokens")
        mask, ended = self._completion_mask(completion)  # [N, T'], [N]
        texts = self.tokenizer.batch_decode(torch.where(mask, completion, self.pad_id), skip_special_tokens=True)
        stopped = torch.tensor([any(s in t for s in self.stop) for t in texts], dtype=torch.bool, device=device)
        truncated = ~ended & ~stopped & (mask.sum(-1) >= self.max_new_tokens)  # [N]
        P = len(prompts)
        return Generation(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completion,
            completion_mask=mask,
            truncated=truncated,
            texts=texts,
            prompt_index=torch.arange(P, device=device).repeat_interleave(num_generations),  # [N]
        )

    @staticmethod
    def _prefill(model: Any, ids: Tensor, mask: Tensor, repeats: int) -> Any:
        """The KV cache of each distinct prompt but its last token, computed once and repeated for its G samples;
        ``generate`` then runs only the last prompt token and the new ones per sample."""
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
        cache.batch_repeat_interleave(repeats)  # [P, ...] -> [P * G, ...], rows in the order of repeat_interleave
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
