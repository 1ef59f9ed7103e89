"""The training loop: one step reads top to bottom, from prompts to the optimizer step.

    sample prompts -> rollout (generate) -> rewards -> rollout strategies -> [ref / old log-probs, values]
    -> shaping -> advantage -> filters -> selectors -> for num_iterations x mini-batches: policy loss
    + regularizers (+ value loss) -> AdamW step -> metrics -> periodic eval -> checkpoint

Every algorithm-specific choice comes from the preset's parts (``core`` registries); the loop never looks at
an algorithm's name. What a part reads (a reference model, a value head, a greedy decode) is declared by the
part itself (``Registry.requires``), and the loop prepares exactly that. Parts that keep state across steps
(tracked quantiles, an adapted temperature) get a private ``state`` dict that checkpoints save.
"""

from __future__ import annotations

import copy
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from grpolab.algorithms import Part, Preset
from grpolab.algorithms.preset import with_run_arguments
from grpolab.core.advantages import ADVANTAGES, compute_gae, outcome_token_rewards
from grpolab.core.filters import FILTERS
from grpolab.core.losses import POLICY_LOSSES, value_loss
from grpolab.core.registry import Registry
from grpolab.core.regularizers import REGULARIZERS
from grpolab.core.selection import SELECTORS
from grpolab.core.shaping import SHAPING
from grpolab.core.stats import group_max, group_min, masked_mean
from grpolab.core.types import Rollout
from grpolab.data import TASKS, Task
from grpolab.data.sampler import SAMPLERS, Observation, Request
from grpolab.models.policy import load_policy
from grpolab.rewards.scoring import score_completions
from grpolab.rollout.hf import Generation, HFEngine
from grpolab.rollout.multiturn import run_episodes
from grpolab.rollout.strategies import ROLLOUT_STRATEGIES, RolloutContext, Sampled, extend, with_default_extras
from grpolab.trainer import checkpoint
from grpolab.trainer.config import DEFAULT_MAX_NEW_TOKENS, TrainConfig, to_dict
from grpolab.trainer.logprob import ValueHead, completion_outputs, sequence_grad_norms
from grpolab.trainer.plot import plot_run


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the run stopped after saving a checkpoint."""


@dataclass
class Batch:
    """One scored rollout batch: what the update needs besides the model."""

    rollout: Rollout
    advantages: torch.Tensor  # [B, T]
    returns: torch.Tensor | None  # [B, T] value targets (critic methods)
    gen: Generation
    metrics: dict[str, float] = field(default_factory=dict)
    value_mask: torch.Tensor | None = None  # [B, T] the critic's tokens: the loss mask before the selectors


class Trainer:
    """Builds everything a run needs from a config; ``run()`` trains. ``resume=True`` continues a run folder."""

    def __init__(self, config: TrainConfig, *, resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(config.output_dir) / str(config.name)
        self.preset: Preset = config.preset()
        needs = self.preset.requires
        torch.manual_seed(config.seed)

        self.task: Task = TASKS[config.task](**config.task_args)
        if config.max_new_tokens is None:  # the task's suggestion (arith_think's thoughts need 22 tokens)
            config.max_new_tokens = int(self.task.info.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        # the most tokens the policy can write in one completion: Dr. GRPO's normaliser, the overlong limit. A
        # multi-turn episode writes up to max_turns turns of max_new_tokens each.
        self.max_len = config.max_new_tokens * (self.task.env.max_turns if self.task.env is not None else 1)
        if not config.stop and self.task.info.get("stop"):  # the task's stop strings (HumanEval's Codex stops)
            config.stop = list(self.task.info["stop"])
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[config.dtype]
        self.model, self.tokenizer = load_policy(config.model, dtype=dtype, seed=config.seed)
        # The reference model is loaded only when a part reads ref_logp (a KL term).
        self.ref_model = None
        if config.lora:
            self.model = _with_lora(self.model, config)  # the reference is the base model: adapters disabled
        elif "ref_logp" in needs:
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.device = next(self.model.parameters()).device
        self.value_head = ValueHead(self.model.config.hidden_size).to(self.device) if "value" in needs else None
        self.needs_ref = "ref_logp" in needs
        self.needs_old_entropy = "old_entropy" in needs
        self.needs_entropy_grad = any("entropy" in REGULARIZERS.requires(p.name) for p in self.preset.regularizers)
        # Old log-probs equal the current ones (detached) when the policy is updated once per rollout; they need a
        # forward pass of their own only for several updates per batch or when a shaping step reads them.
        self.on_policy = config.num_iterations == 1 and config.minibatches == 1
        shaping_reads_old = any("old_logp" in SHAPING.requires(p.name) for p in self.preset.shaping)
        self.old_at_rollout = not self.on_policy or shaping_reads_old
        # cross-step state of each part (RiskPO quantiles, AEPO's temperature ...), saved in checkpoints
        self.part_state: dict[str, dict[str, Any]] = {}

        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=tuple(config.adam_betas), weight_decay=config.weight_decay
        )
        total_updates = config.steps * config.num_iterations * config.minibatches
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(config.lr_schedule, config.warmup_steps, total_updates)
        )
        self.sampler = SAMPLERS[config.sampler](len(self.task.train), seed=config.seed, **config.sampler_args)
        self.engine = HFEngine(
            self.tokenizer,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            stop=config.stop,
            share_prefill=config.share_prompt_forward,
        )
        self.context = RolloutContext(
            sample_fn=self._sample,
            score_fn=self._score,
            continue_fn=self._continue_from,
            outputs_fn=self._token_outputs,
            model=self.model,
            optimizer=self.optimizer,
            pad_id=self.engine.pad_id,
            tokenizer=self.tokenizer,
            device=self.device,
            num_generations=config.num_generations,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
        )
        self.step = 0
        self._batch_row_ids: list[int] = []
        self.generated_tokens = 0  # every sampled token of the run: all sampler rounds and rollout strategies
        self._rng_at_step_start: dict[str, Any] | None = None
        self._sampler_at_step_start: dict[str, Any] | None = None
        self._tokens_at_step_start = 0
        self._part_state_at_step_start: dict[str, dict[str, Any]] = {}
        self._last_saved = -1
        if not resume and checkpoint.list_checkpoints(self.run_dir / "checkpoints"):
            raise FileExistsError(
                f"{self.run_dir} already holds a run with checkpoints; continue it with --resume {self.run_dir} "
                "or choose another --name"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        else:
            (self.run_dir / "metrics.jsonl").write_text("")
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    # ------------------------------------------------------------------------------------------------ the loop
    def run(self) -> dict[str, float]:
        """Train for the remaining steps; returns the last logged metrics (with the final evaluation)."""
        config = self.config
        last: dict[str, float] = {}
        if self.step == 0:
            last = self._log({"step": 0, **self.evaluate()})
        progress = progress_bar(config.progress, config.steps, str(config.name), initial=self.step)
        try:
            while self.step < config.steps and not self._budget_spent():
                self._rng_at_step_start = checkpoint.rng_state()
                self._part_state_at_step_start = copy.deepcopy(self.part_state)
                self._sampler_at_step_start = self.sampler.state_dict()  # a snapshot (the protocol's promise)
                self._tokens_at_step_start = self.generated_tokens
                t0 = time.perf_counter()
                batch = self.rollout_batch()
                metrics = {**batch.metrics, **self.update(batch)}
                self.step += 1
                elapsed = time.perf_counter() - t0
                metrics.update(step=self.step, step_time=elapsed, tokens_per_s=batch.gen.num_tokens / elapsed)
                metrics.update(generated_tokens=float(self.generated_tokens))
                spent = self._budget_spent()
                final = self.step == config.steps or spent
                if spent:
                    metrics["budget_spent"] = 1.0
                if final or (config.eval_every and self.step % config.eval_every == 0):
                    metrics.update(self.evaluate())
                last = self._log(metrics)
                if final or (config.save_every and self.step % config.save_every == 0):
                    self.save()
                progress.update(1)
                progress.set_postfix_str(_postfix(metrics), refresh=False)
                if spent:  # the last record (and the CLI's summary) has budget_spent = 1
                    break
        except BaseException:
            self._save_on_crash()
            raise
        finally:
            progress.close()
        self._finish()
        return last

    def rollout_batch(self) -> Batch:
        """Sample prompts, generate, score, and turn the result into advantages (no gradient)."""
        sampled, metrics = self._sample_batch()
        for i, part in enumerate(self.preset.rollout):
            sampled, done = self._call(ROLLOUT_STRATEGIES, "rollout", i, part, self.context, sampled)
            metrics.update(done)
        gen = sampled.gen
        P = int(sampled.group.max()) + 1
        spread = group_max(sampled.reward, sampled.group, P) - group_min(sampled.reward, sampled.group, P)  # [P]
        metrics["zero_variance_frac"] = (spread == 0).float().mean().item()  # trained groups without reward spread

        old_logp = ref_logp = values = None
        # the fixed-meaning extras (off_policy, prefix_len) are always there, so parts may read them unconditionally
        extras: dict[str, Any] = dict(with_default_extras(sampled).extras)
        if len(sampled.rows) == len(self._batch_row_ids):  # strategies keep the rows (they remap prompt_index)
            prompt_id = torch.tensor(self._batch_row_ids, device=self.device)[gen.prompt_index]  # [N]
            extras["prompt_id"] = prompt_id  # the task.train index of each completion's prompt
        with torch.no_grad():
            if self.old_at_rollout or self.value_head is not None or self.needs_old_entropy:
                out = self._outputs(self.model, gen, value_head=self.value_head, entropy=self.needs_old_entropy)
                old_logp = out.logp if self.old_at_rollout else None
                values = out.value
                if self.needs_old_entropy:
                    extras["old_entropy"] = out.entropy  # [N, T]
            if self.needs_ref:
                with self._reference() as ref:
                    ref_logp = self._outputs(ref, gen).logp
        rollout = Rollout(
            group=sampled.group,
            mask=loss_mask(gen, extras),
            reward=sampled.reward.to(self.device),
            rewards=torch.nan_to_num(sampled.rewards, nan=0.0).to(self.device),
            reward_names=sampled.reward_names,
            old_logp=_fp32(old_logp),
            ref_logp=_fp32(ref_logp),
            value=_fp32(values),
            truncated=gen.truncated,
            extras={**extras, "row": torch.arange(gen.completion_ids.shape[0], device=self.device)},
        )
        if not bool(sampled.valid.all()):  # samples whose reward failed (--on-reward-error skip) leave the batch
            rollout = rollout.select(sampled.valid.to(self.device))
        for i, part in enumerate(self.preset.shaping):
            rollout, shaped = self._call(SHAPING, "shaping", i, part, rollout)
            metrics.update(shaped)
        if self.preset.shaping:  # the reward the advantage sees (``reward`` is the task's, before shaping)
            metrics["shaped_reward"] = rollout.reward.mean().item()
        advantages = self._call(ADVANTAGES, "advantage", 0, self.preset.advantage, rollout)  # [B, T]
        returns = None
        if self.value_head is not None:
            gae_args = {k: v for k, v in self.preset.advantage.params.items() if k in ("gamma", "lam")}
            _, returns = compute_gae(outcome_token_rewards(rollout), rollout.value, rollout.mask, **gae_args)
        keep = torch.ones(rollout.batch_size, dtype=torch.bool, device=self.device)
        for i, part in enumerate(self.preset.filters):
            kept, filtered = self._call(FILTERS, "filters", i, part, rollout)
            keep &= kept
            metrics.update(filtered)
        metrics["adv_abs_mean"] = masked_mean(advantages.abs(), rollout.mask).item()
        token_keep = value_mask = rollout.mask  # [B, T]
        for i, part in enumerate(self.preset.selectors):
            advantages, kept_tokens, selected = self._call(SELECTORS, "selectors", i, part, rollout, advantages)
            token_keep = token_keep & kept_tokens  # [B, T]
            metrics.update(selected)
        if self.preset.selectors:
            metrics["kept_token_frac"] = (token_keep.sum() / rollout.mask.sum().clamp(min=1)).item()
            keep &= token_keep.any(dim=-1)
        metrics["kept_frac"] = keep.float().mean().item()
        if not bool(keep.any()):
            return Batch(rollout, advantages, returns, gen, metrics | {"skipped": 1.0})
        rollout = rollout.select(keep)
        if self.preset.selectors:
            rollout = rollout.replace(mask=token_keep[keep])
        advantages = advantages[keep] * rollout.mask  # [B', T]
        returns = None if returns is None else returns[keep]
        return Batch(rollout, advantages, returns, gen, metrics, value_mask=value_mask[keep])

    def _sample_batch(self) -> tuple[Sampled, dict[str, float]]:
        """Generation rounds driven by the prompt sampler until ``num_prompts`` groups are kept (one round for
        ``uniform``). Logged accuracy, reward and lengths are over every completion generated this step."""
        config = self.config
        needed, rounds, gen_time = config.num_prompts, 0, 0.0
        batch: Sampled | None = None
        generated: list[Sampled] = []
        row_ids: list[int] = []  # task.train index of each row of ``batch.rows``
        while needed > 0 and rounds < self.sampler.max_rounds:
            request = self.sampler.request(needed, config.num_generations, step=self.step, total_steps=config.steps)
            rows = [self.task.train[i] for i in request.rows]
            t0 = time.perf_counter()
            sampled = self._sample(rows, request.num_generations)
            gen_time += time.perf_counter() - t0
            rounds += 1
            generated.append(sampled)
            keep = self.sampler.observe(self._observation(request, sampled))
            if len(keep) != len(rows):
                raise ValueError(f"sampler {config.sampler!r}: {len(keep)} keep flags for {len(rows)} groups")
            chosen = [i for i, k in enumerate(keep) if k][:needed]
            if not chosen:
                continue
            index = sampled.gen.prompt_index  # [N]
            part = sampled.take(torch.nonzero(torch.isin(index, torch.tensor(chosen, device=index.device))).flatten())
            batch = part if batch is None else extend(batch, part, self.engine.pad_id)
            row_ids += list(request.rows)
            needed -= len(chosen)
        metrics: dict[str, float] = {**generated[0].metrics, "gen_time": gen_time}
        if batch is None:  # no group kept in any round: train on the last round as it is
            batch, row_ids = generated[-1], list(request.rows)
        self._batch_row_ids = row_ids
        batch = replace(batch, group=torch.unique(batch.group, return_inverse=True)[1])  # ids 0..P'-1
        accuracy = torch.cat([g.accuracy for g in generated])  # [N_all]
        metrics["accuracy"] = float(accuracy.mean())
        metrics["reward"] = torch.cat([g.reward for g in generated]).mean().item()
        lengths = torch.cat([g.gen.completion_mask.sum(-1).float() for g in generated])  # [N_all]
        metrics["response_length"] = lengths.mean().item()
        metrics["truncated_frac"] = torch.cat([g.gen.truncated.float() for g in generated]).mean().item()
        for key in ("tool_calls", "turns"):  # multi-turn tasks: per completion, over every generated one
            if key in generated[0].extras:
                metrics[key] = torch.cat([g.extras[key].float() for g in generated]).mean().item()
        metrics.update({f"sampler/{k}": v for k, v in self.sampler.metrics().items()})
        if self.sampler.max_rounds > 1:
            metrics["sampler/rounds"] = float(rounds)
            metrics["sampler/kept_groups"] = float(config.num_prompts - max(needed, 0))
            metrics["sampler/groups_generated"] = float(sum(len(g.rows) for g in generated))
        return batch, metrics

    def _budget_spent(self) -> bool:
        budget = self.config.max_generated_tokens
        return bool(budget) and self.generated_tokens >= budget

    def _observation(self, request: Request, sampled: Sampled) -> Observation:
        """What the sampler sees of a round: per group rewards, accuracies, completion token ids (and gradient
        norms when the request measures them)."""
        gen = sampled.gen
        per_group = [torch.nonzero(gen.prompt_index == i).flatten() for i in range(len(request.rows))]
        ids: list[list[int]] = []
        if "completions" in request.measure:  # token ids as lists: one tolist, sliced by the completion lengths
            lengths = gen.completion_mask.sum(-1).tolist()
            ids = [row[:n] for row, n in zip(gen.completion_ids.tolist(), lengths, strict=True)]
        norms = None
        if "grad_norms" in request.measure:
            norms_all = sequence_grad_norms(
                self.model,
                gen.prompt_ids,
                gen.prompt_mask,
                gen.completion_ids,
                gen.completion_mask,
                temperature=self.config.temperature,
            )  # [N]
            norms = [norms_all[g] for g in per_group]
        return Observation(
            rows=list(request.rows),
            rewards=[sampled.reward[g] for g in per_group],
            accuracies=[sampled.accuracy[g] for g in per_group],
            completions=[[ids[j] for j in g.tolist()] for g in per_group] if ids else [],
            step=self.step,
            total_steps=self.config.steps,
            grad_norms=norms,
        )

    def _call(
        self,
        registry: Registry,
        slot: str,
        index: int,
        part: Part,
        *args: Any,
        advantages: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call a part with its preset hyper-parameters and the run arguments it declares (``RUN_ARGUMENTS``)."""
        fn = registry[part.name]
        run = {
            "max_len": self.max_len,
            "step": self.step,
            "total_steps": self.config.steps,
            "state": None,
            "advantages": advantages,
        }
        arguments = with_run_arguments(fn, part.params, run)
        if "state" in arguments:  # only parts that keep state get (and checkpoint) a dict
            arguments["state"] = self.part_state.setdefault(f"{slot}.{index}.{part.name}", {})
        return fn(*args, **kwargs, **arguments)

    def update(self, batch: Batch) -> dict[str, float]:
        """num_iterations passes x mini-batches x accumulated micro-batches; one optimizer step per mini-batch."""
        config = self.config
        if batch.metrics.get("skipped"):
            return {"lr": self.scheduler.get_last_lr()[0]}
        sums: dict[str, float] = {}
        count = 0
        grad_norms = []
        for _ in range(config.num_iterations):
            for mini in self._split(batch.rollout.group, config.minibatches):
                self.optimizer.zero_grad(set_to_none=True)
                mini_mask = batch.rollout.mask[mini]  # [b, T]
                counts = dict(num_tokens=float(mini_mask.sum()), num_seqs=float(len(mini)))
                if batch.value_mask is not None:  # the critic's token count (selectors narrow the policy's only)
                    counts["value_tokens"] = float(batch.value_mask[mini].sum())
                for micro in self._split(batch.rollout.group[mini], config.grad_accum, within=mini):
                    loss, metrics = self._micro_loss(batch, micro, counts)
                    if not torch.isfinite(loss):
                        self._stop_non_finite(f"the loss is {loss.item()} ({metrics})")
                    loss.backward()
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                grad_norms.append(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm or math.inf).item())
                self.optimizer.step()
                self.scheduler.step()
        out = {k: v / count for k, v in sums.items()}
        out["grad_norm"] = sum(grad_norms) / len(grad_norms)
        out["lr"] = self.scheduler.get_last_lr()[0]
        return out

    def _split(self, group: torch.Tensor, parts: int, *, within: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Row indices of ``parts`` random chunks: of completions, or of whole prompt groups with
        ``minibatch_groups``. ``within`` (long [b]) maps the rows of ``group`` to batch rows (micro-batches of a
        mini-batch keep its order)."""
        rows = torch.arange(len(group), device=self.device) if within is None else within  # [b]
        if within is not None and not self.config.minibatch_groups:
            return list(rows.chunk(parts))
        if not self.config.minibatch_groups:
            return list(rows[torch.randperm(len(group)).to(self.device)].chunk(parts))
        ids = torch.unique(group)  # [P']
        if within is None:
            ids = ids[torch.randperm(len(ids)).to(self.device)]
        return [rows[torch.isin(group, chunk)] for chunk in ids.chunk(parts)]

    def _micro_loss(self, batch: Batch, rows: torch.Tensor, counts: dict[str, float]) -> tuple[torch.Tensor, dict]:
        """Loss of the completions ``rows`` of the batch, normalised by the mini-batch's global counts."""
        config, preset = self.config, self.preset
        keep = torch.zeros(batch.rollout.batch_size, dtype=torch.bool, device=self.device)
        keep[rows] = True
        rollout = batch.rollout.select(keep)
        adv = batch.advantages[keep]  # [b, T]
        gen_rows = rollout.extras["row"]  # [b] rows of the generation
        out = self._outputs(self.model, batch.gen, rows=gen_rows, entropy=True, value_head=self.value_head)
        logp = out.logp  # [b, T]
        if not bool(torch.isfinite(logp[rollout.mask]).all()):
            self._stop_non_finite("the model's log-probs hold NaN or inf, so the loss is nan")
        if rollout.old_logp is None:  # on-policy: old log-probs are the current ones, detached
            rollout = rollout.replace(old_logp=logp.detach())
        counts = dict(counts)
        value_tokens = counts.pop("value_tokens", counts["num_tokens"])
        agg = dict(aggregation=preset.aggregation, norm_constant=self.max_len, **counts)
        loss, metrics = self._call(POLICY_LOSSES, "loss", 0, preset.loss, logp, rollout, adv, **agg)
        entropy = out.entropy  # [b, T]
        for i, part in enumerate(preset.regularizers):
            term, reg_metrics = self._call(
                REGULARIZERS, "regularizers", i, part, logp, rollout, entropy=entropy, advantages=adv, **agg
            )
            loss = loss + term
            metrics.update(reg_metrics)
        if self.value_head is not None and batch.returns is not None:
            # the critic learns on every token of its completions, also those a selector kept out of the policy loss
            critic = rollout if batch.value_mask is None else rollout.replace(mask=batch.value_mask[keep])
            vf, vf_metrics = value_loss(
                out.value,
                critic,
                batch.returns[keep],
                **{**agg, "aggregation": "token_mean", "num_tokens": value_tokens},
                **(preset.value_loss or {}),
            )
            loss = loss + config.vf_coef * vf
            metrics.update(vf_metrics)
        metrics["entropy"] = masked_mean(entropy.detach(), rollout.mask).item()
        metrics["loss"] = loss.item()
        return loss, metrics

    # -------------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """pass@1 (and pass@k) on held-out prompts; seeded and isolated from the training random stream."""
        return evaluate(
            self.model,
            self.tokenizer,
            self.task,
            num_prompts=self.config.eval_prompts,
            samples=self.config.eval_samples,
            temperature=self.config.eval_temperature,
            max_new_tokens=self.config.max_new_tokens,
            top_p=self.config.eval_top_p,
            top_k=self.config.eval_top_k,
            stop=self.config.stop,
            seed=self.config.seed,
            on_error=self.config.on_reward_error,
        )

    # ---------------------------------------------------------------------------------------------- helpers
    def _sample(
        self,
        rows: list[dict],
        num_generations: int | list[int],
        *,
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
        score: bool = True,
    ) -> Sampled | Generation:
        """Completions of ``rows`` from the policy, counted in ``generated_tokens``, then scored (``_score``);
        ``score=False`` returns the Generation unscored (``RolloutContext.generate``: completions a strategy scores
        under other rows)."""
        gen, extras = generate(
            self.engine,
            self.model,
            self.task.env,
            rows,
            num_generations=num_generations,
            greedy=greedy,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
        )
        self.generated_tokens += sampled_tokens(gen, extras)
        if not score:
            return gen
        sampled = self._score(rows, gen)
        return replace(sampled, extras={**sampled.extras, **extras})

    def _continue_from(self, gen: Generation, index: torch.Tensor, cut: torch.Tensor, **kw: Any):
        if self.task.env is not None:
            raise ValueError(
                f"the preset's rollout strategies continue completions from a prefix, which the multi-turn task "
                f"{self.task.name!r} does not support (an environment's replies cannot be replayed); choose a preset "
                "without such a strategy"
            )
        out, prefix_len = self.engine.continue_from(self.model, gen, index, cut, **kw)
        self.generated_tokens += out.num_tokens - int(prefix_len.sum())  # only the newly sampled tokens
        return out, prefix_len

    def _score(self, rows: list[dict], gen: Generation) -> Sampled:
        """Task rewards of ``gen`` (and the scoring metrics: per-function means, errors)."""
        prompts, completions, columns = reward_inputs(rows, gen)
        scores = score_completions(
            self.task.reward_funcs,
            self.task.reward_weights,
            prompts,
            completions,
            columns,
            on_error=self.config.on_reward_error,
        )
        if self.task.accuracy in self.task.reward_funcs:
            column = self.task.reward_funcs.index(self.task.accuracy)
            accuracy = scores.rewards[:, column].nan_to_num(0.0)
        else:
            accuracy = torch.tensor([float(a or 0.0) for a in self.task.accuracy(prompts, completions, **columns)])
        return Sampled(
            rows=rows,
            gen=gen,
            reward=scores.reward.to(self.device),
            rewards=scores.rewards.to(self.device),
            reward_names=tuple(scores.names),
            valid=scores.valid.to(self.device),
            accuracy=accuracy.to(self.device),
            group=gen.prompt_index,
            metrics=scores.metrics,
        )

    @torch.no_grad()
    def _token_outputs(self, gen: Generation) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._outputs(self.model, gen, entropy=True)
        return out.logp, out.entropy

    def _outputs(self, model: Any, gen: Generation, *, rows=None, entropy=False, value_head=None):
        take = slice(None) if rows is None else rows
        return completion_outputs(
            model,
            gen.prompt_ids[take],
            gen.prompt_mask[take],
            gen.completion_ids[take],
            gen.completion_mask[take],
            group=gen.prompt_index[take] if self.config.share_prompt_forward else None,
            temperature=self.config.temperature,
            chunk_size=self.config.logprob_chunk,
            entropy=entropy,
            entropy_grad=self.needs_entropy_grad,
            value_head=value_head,
        )

    @contextmanager
    def _reference(self):
        if self.ref_model is not None:
            yield self.ref_model
        else:  # LoRA: the base model with the adapters switched off is the reference
            with self.model.disable_adapter():
                yield self.model

    def _log(self, metrics: dict[str, float]) -> dict[str, float]:
        return append_metrics(self.run_dir / "metrics.jsonl", metrics)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": {k: v for k, v in self.model.state_dict().items()},
            "value_head": None if self.value_head is None else self.value_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "part_state": self.part_state,
            "generated_tokens": self.generated_tokens,
            "rng": checkpoint.rng_state(),
        }

    def save(self) -> None:
        if self._last_saved == self.step:
            return
        checkpoint.save(self.run_dir / "checkpoints", self.step, self.state_dict(), keep=self.config.keep_checkpoints)
        self._last_saved = self.step

    def _stop_non_finite(self, what: str) -> None:
        # Saved under the last completed step; with several mini-batches per step the weights may already hold
        # this step's earlier mini-batch updates (they were finite).
        self.save()
        raise NonFiniteLossError(
            f"step {self.step + 1}: {what}; the last good state is saved in {self.run_dir / 'checkpoints'}. "
            "Lower --learning-rate, or check the rewards and the model."
        )

    def _save_on_crash(self) -> None:
        """Keep the last completed step (with the random state it started the failed step with)."""
        if self._last_saved == self.step or self._rng_at_step_start is None:
            return
        state = self.state_dict()
        state["rng"] = self._rng_at_step_start
        state["part_state"] = self._part_state_at_step_start  # the failed step may have advanced the live one
        state["sampler"] = self._sampler_at_step_start
        state["generated_tokens"] = self._tokens_at_step_start
        checkpoint.save(self.run_dir / "checkpoints", self.step, state, keep=self.config.keep_checkpoints)
        self._last_saved = self.step

    def _resume(self) -> None:
        state = checkpoint.load_latest(self.run_dir / "checkpoints")
        if state is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}")
        self.model.load_state_dict(state["model"])
        if self.value_head is not None:
            self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.part_state = state.get("part_state", {})
        self.generated_tokens = state.get("generated_tokens", 0)
        checkpoint.set_rng_state(state["rng"])
        self.step = self._last_saved = state["step"]
        # Metrics logged after the checkpoint were produced by steps that will run again: drop them.
        path = self.run_dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        path.write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= self.step))

    def _finish(self) -> None:
        final = self.run_dir / "final"
        model = self.model.merge_and_unload() if self.config.lora else self.model
        model.save_pretrained(final, safe_serialization=True)
        self.tokenizer.save_pretrained(final)
        if self.value_head is not None:
            torch.save(self.value_head.state_dict(), final / "value_head.pt")
        plot_run(self.run_dir)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    model: Any,
    tokenizer: Any,
    task: Task,
    *,
    num_prompts: int,
    samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 8,
    top_p: float = 1.0,
    top_k: int = 0,
    stop: list[str] | None = None,
    seed: int = 0,
    on_error: str = "raise",
) -> dict[str, float]:
    """Held-out scores of ``samples`` completions per prompt on the first ``num_prompts`` eval rows (``grpolab
    train``'s periodic evaluation, ``grpolab sft``'s greedy one, ``grpolab eval``). ``temperature=0`` decodes greedily.

    - ``eval/pass@1``: mean accuracy (``task.accuracy``) over the samples; ``eval/pass@k`` for k = samples > 1
      (unbiased estimator of Chen et al. 2021, arXiv 2107.03374).
    - ``eval/reward/<name>``: the mean of each reward function of the task (and of the accuracy check) over the
      samples it scored, e.g. ``eval/reward/empty_thought`` for ``arith_think`` (the fraction that skip thinking).
    - ``eval/response_length``: mean completion length in tokens (EOS included); ``eval/truncated_frac``: the
      fraction that hit ``max_new_tokens``.
    - ``eval/reward_errors``: samples a reward function failed on (``on_error="skip"``; ``"raise"`` raises
      ``RewardError``). A sample whose accuracy check fails counts as wrong; another function's failure leaves its
      accuracy as checked.

    Uses its own seed and leaves the global random state as it found it. Empty when the task has no eval rows."""
    rows = list(task.eval[:num_prompts])
    if not rows:
        return {}
    engine = HFEngine(
        tokenizer, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, stop=stop
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1_000_003)
        gen, extras = generate(engine, model, task.env, rows, num_generations=samples, greedy=temperature == 0)
    prompts, completions, columns = reward_inputs(rows, gen)
    funcs = list(task.reward_funcs)
    if task.accuracy not in funcs:
        funcs.insert(0, task.accuracy)
    scores = score_completions(funcs, None, prompts, completions, columns, on_error=on_error)
    # NaN (the check failed or returned None) counts as wrong; the accuracy column alone decides, as when it was
    # scored on its own
    correct = scores.finite_rewards()[:, funcs.index(task.accuracy)]  # [P * k]
    correct = correct.view(len(rows), samples)  # [P, k]
    out = {"eval/pass@1": correct.mean().item(), "eval/reward_errors": scores.metrics["reward_errors"]}
    if samples > 1:
        out[f"eval/pass@{samples}"] = pass_at_k(correct, samples).item()
    out["eval/response_length"] = gen.completion_mask.sum(-1).float().mean().item()
    out["eval/truncated_frac"] = gen.truncated.float().mean().item()
    for key in ("tool_calls", "turns"):
        if key in extras:
            out[f"eval/{key}"] = extras[key].float().mean().item()
    out.update({f"eval/reward/{name}": scores.metrics[f"reward/{name}"] for name in scores.names})
    return out


def generate(
    engine: HFEngine, model: Any, env: Any, rows: list[dict], *, num_generations: Any, **kw: Any
) -> tuple[Generation, dict[str, torch.Tensor]]:
    """Completions of ``rows``: one ``engine.generate`` call for a single-turn task (no extras), episodes of the
    task's environment (``grpolab.rollout.multiturn``) with their extras ``env_mask``, ``tool_calls``, ``turns``
    otherwise."""
    if env is not None:
        return run_episodes(engine, model, env, rows, num_generations=num_generations, **kw)
    return engine.generate(model, [r["prompt"] for r in rows], num_generations=num_generations, **kw), {}


def sampled_tokens(gen: Generation, extras: dict[str, Any]) -> int:
    """Tokens the policy sampled in ``gen``: its completion tokens less the environment's (``extras["env_mask"]``)."""
    return int(loss_mask(gen, extras).sum())


def loss_mask(gen: Generation, extras: dict[str, Any]) -> torch.Tensor:
    """The completion tokens that may enter the loss, bool [N, T]: ``gen.completion_mask`` without environment
    tokens (``extras["env_mask"]``, multi-turn tasks), which the policy did not sample."""
    env_mask = extras.get("env_mask")
    if env_mask is None:
        return gen.completion_mask  # [N, T]
    return gen.completion_mask & ~env_mask[:, : gen.completion_mask.shape[1]]  # [N, T]


def append_metrics(path: str | Path, metrics: dict[str, float]) -> dict[str, float]:
    """Append ``metrics`` as one JSON line to ``path`` (a run's ``metrics.jsonl``); returns ``metrics``. Floats are
    rounded to 6 digits; NaN (e.g. the std of a reward nobody returned) is written as null, so the file stays valid
    JSON."""
    record = {k: (None if v != v else round(v, 6)) if isinstance(v, float) else v for k, v in metrics.items()}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return metrics


def reward_inputs(rows: list[dict], gen: Generation) -> tuple[list[Any], list[Any], dict[str, list[Any]]]:
    """TRL reward-function arguments for the completions of ``gen``: prompts, completions (strings, or one
    assistant message for chat prompts) and every other column of the rows, aligned with the completions."""
    idx = gen.prompt_index.tolist()
    prompts = [rows[i]["prompt"] for i in idx]
    completions: list[Any] = [
        [{"role": "assistant", "content": text}] if isinstance(p, list) else text
        for p, text in zip(prompts, gen.texts, strict=True)
    ]
    columns = {k: [rows[i][k] for i in idx] for k in rows[0] if k != "prompt"}
    return prompts, completions, columns


def pass_at_k(correct: torch.Tensor, k: int) -> torch.Tensor:
    """Unbiased pass@k from n samples per prompt with c correct: mean of 1 − C(n−c, k) / C(n, k)."""
    n = correct.shape[1]
    c = correct.sum(dim=1)  # [P]
    fail = torch.tensor([math.comb(n - int(ci), k) / math.comb(n, k) for ci in c.tolist()])  # [P]
    return (1.0 - fail).mean()


# ---------------------------------------------------------------------------------------------- setup helpers
def lr_factor(schedule: str, warmup: int, total: int):
    """The learning-rate multiplier of optimizer step ``i``: linear warm-up over ``warmup`` steps, then
    ``schedule`` (constant, linear to 0, or cosine to 0) over the remaining ``total - warmup``."""

    def factor(i: int) -> float:
        if warmup and i < warmup:
            return (i + 1) / warmup
        progress = min(1.0, (i - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def _with_lora(model: Any, config: TrainConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("--lora needs peft: pip install peft") from e
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules="all-linear"
    )
    return get_peft_model(model, lora)


def _fp32(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.detach().float()


def progress_bar(enabled: bool, total: int, name: str, initial: int = 0):
    """A tqdm bar over ``total`` steps, or a silent stand-in when ``enabled`` is False."""
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _postfix(m: dict[str, float]) -> str:
    keys = [("reward", "reward"), ("accuracy", "acc"), ("entropy", "ent"), ("kl", "kl"), ("tokens_per_s", "tok/s")]
    parts = [f"{short}={m[k]:.3g}" for k, short in keys if k in m]
    if "eval/pass@1" in m:
        parts.append(f"eval={m['eval/pass@1']:.3f}")
    return " ".join(parts)


def train(config: TrainConfig, *, resume: bool = False) -> dict[str, float]:
    """Train with ``config``; returns the last metrics. See :class:`Trainer`."""
    return Trainer(config, resume=resume).run()


__all__ = ["NonFiniteLossError", "Trainer", "append_metrics", "evaluate", "pass_at_k", "train"]
