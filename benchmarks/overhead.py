"""grpolab's step time against the physical floor of its design: ``model.generate`` + one forward/backward.

Run BY HAND::

    cd <repository root>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/overhead.py                          # both configs, β 0.04 and 0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/overhead.py --configs large --variants nokl --repeats 20
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/overhead.py --configs tiny --profile 5   # + cProfile of 5 steps

What it measures, in one process on one thread, interleaved repeat by repeat so machine noise hits all alike:

1. a grpolab training step, ``trainer.rollout_batch(); trainer.update(batch)`` (preset ``grpo``; variant ``kl``
   keeps its k3 KL term with β = 0.04 and so a reference model, variant ``nokl`` sets ``regularizers: []``);
2. the floor: bare ``model.generate`` of a batch of the same shape (P prompts drawn from the same task,
   tokenized with the same tokenizer, left-padded, each repeated G times; sampling at temperature 1, top_k 0,
   top_p 1, the same ``max_new_tokens``) and ONE forward + backward of that batch (prompt + completion tokens,
   loss = mean negative log-likelihood of the completion tokens), with the same model object;
3. the same batch's forward under ``torch.no_grad()`` (what a reference model costs).

``ratio = median grpolab step / (median generate + median forward/backward)``; the design target is ≤ 1.25.
For variant ``kl`` the table also gives the ratio against floor + one no-grad forward (the reference pass the
KL term needs by construction). The floor has no optimizer step, no reward and no log-prob bookkeeping: those
are what the ratio charges to grpolab.

Breakdown: the Trainer's methods are wrapped with timers from outside (no source change): ``engine.generate``
(of which ``model.generate``), ``_score`` (reward functions), ``_outputs`` under no_grad (reference / old
log-probs) and with grad (training forward + log-probs + entropy), ``Tensor.backward``, ``clip_grad_norm_``,
``optimizer.step``; "other" is the rest of ``rollout_batch`` (advantages, Rollout assembly) and of ``update``
(loss math, metrics, ``.item()`` calls).

Configs are those of ``vs_trl.py`` (``tiny``: tiny-arith, 16 x 8 completions, 8 new tokens; ``large``: random
Llama h256 x 4 layers, 4 x 8 completions, 64 new tokens; ``min_new_tokens = 64`` and ``suppress_tokens`` in its saved
generation config make every completion, grpolab's and the floor's, run to 64 tokens). ``--profile N`` adds a cProfile
of N grpolab steps per config and variant (top functions by cumulative and by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import functools
import io
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from vs_trl import BenchConfig, grpolab_trainer, make_configs, med, quiet_single_thread

VARIANTS = {"kl": 0.04, "nokl": 0.0}
PARTS = [
    ("generation", "engine.generate (all)"),
    ("model.generate", "  of which model.generate"),
    ("score", "reward scoring (_score)"),
    ("nograd_fwd", "no-grad forwards (ref / old log-probs)"),
    ("rollout_other", "rollout other (advantages, Rollout)"),
    ("train_fwd", "training forward + log-probs + entropy"),
    ("backward", "backward"),
    ("clip", "clip_grad_norm_"),
    ("optimizer", "optimizer.step (+ scheduler)"),
    ("update_other", "update other (loss math, metrics)"),
]


# ------------------------------------------------------------------------------------------------ timers
class Timers:
    """Accumulates seconds per part for the current step while ``active``."""

    def __init__(self) -> None:
        self.active = False
        self.now: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Any, *, split_by_grad: tuple[str, str] | None = None) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return fn(*args, **kwargs)
            key = name if split_by_grad is None else split_by_grad[0 if torch.is_grad_enabled() else 1]
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.now[key] += time.perf_counter() - t0

        return timed


def instrument(trainer: Any, timers: Timers) -> None:
    """Wrap the Trainer's parts with timers (instance attributes and two torch functions; no source change)."""
    trainer.engine.generate = timers.wrap("generation", trainer.engine.generate)
    trainer.model.generate = timers.wrap("model.generate", trainer.model.generate)
    trainer._score = timers.wrap("score", trainer._score)
    trainer._outputs = timers.wrap("outputs", trainer._outputs, split_by_grad=("train_fwd", "nograd_fwd"))
    trainer.optimizer.step = timers.wrap("optimizer", trainer.optimizer.step)
    trainer.scheduler.step = timers.wrap("optimizer", trainer.scheduler.step)
    trainer.rollout_batch = timers.wrap("rollout_batch", trainer.rollout_batch)
    trainer.update = timers.wrap("update", trainer.update)
    torch.Tensor.backward = timers.wrap("backward", torch.Tensor.backward)
    torch.nn.utils.clip_grad_norm_ = timers.wrap("clip", torch.nn.utils.clip_grad_norm_)


# ------------------------------------------------------------------------------------------------ the floor
class Floor:
    """Bare transformers: generate a batch of the same shape, then one forward + backward of it."""

    def __init__(self, trainer: Any, cfg: BenchConfig, seed: int = 1) -> None:
        self.model, self.tok, self.cfg = trainer.model, trainer.tokenizer, cfg
        self.rows = trainer.task.train
        self.gen = torch.Generator().manual_seed(seed)
        self.batch: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def generate(self) -> float:
        pick = torch.randint(len(self.rows), (self.cfg.num_prompts,), generator=self.gen).tolist()
        enc = self.tok([self.rows[i]["prompt"] for i in pick], return_tensors="pt", padding=True)  # left padding
        ids = enc["input_ids"].repeat_interleave(self.cfg.num_generations, dim=0)  # [N, Lp]
        mask = enc["attention_mask"].repeat_interleave(self.cfg.num_generations, dim=0)  # [N, Lp]
        t0 = time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=self.cfg.max_new_tokens,
                pad_token_id=self.tok.pad_token_id,
                eos_token_id=self.tok.eos_token_id,
            )  # [N, Lp + T]
        self.model.train()
        elapsed = time.perf_counter() - t0
        completion = out[:, ids.shape[1] :]  # [N, T]
        is_eos = completion == self.tok.eos_token_id  # [N, T]
        cmask = (is_eos.cumsum(1) - is_eos.long()) == 0  # [N, T] up to and including the first EOS
        self.batch = (out, torch.cat([mask, cmask.long()], dim=1), ids.shape[1])
        return elapsed

    def _nll(self) -> torch.Tensor:
        assert self.batch is not None
        ids, attention, lp = self.batch
        logits = self.model(input_ids=ids, attention_mask=attention, use_cache=False).logits  # [N, L, V]
        logp = torch.log_softmax(logits[:, lp - 1 : -1].float(), dim=-1)  # [N, T, V]
        picked = logp.gather(-1, ids[:, lp:].unsqueeze(-1)).squeeze(-1)  # [N, T]
        mask = attention[:, lp:].float()  # [N, T]
        return -(picked * mask).sum() / mask.sum()

    def forward_backward(self) -> float:
        t0 = time.perf_counter()
        loss = self._nll()
        torch.autograd.backward(loss)  # not Tensor.backward: that one is timed for grpolab's breakdown
        elapsed = time.perf_counter() - t0
        self.model.zero_grad(set_to_none=True)
        return elapsed

    def forward_nograd(self) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            self._nll()
        return time.perf_counter() - t0

    def mean_length(self) -> float:
        assert self.batch is not None
        _, attention, lp = self.batch
        return attention[:, lp:].sum(-1).float().mean().item()


# ------------------------------------------------------------------------------------------------ measurement
def measure(cfg: BenchConfig, beta: float, *, repeats: int, warmup: int, profile: int, seed: int) -> dict[str, Any]:
    timers = Timers()
    with tempfile.TemporaryDirectory(prefix="grpolab-overhead-") as tmp:
        trainer = grpolab_trainer(cfg, beta=beta, output_dir=tmp, seed=seed)
        instrument(trainer, timers)
        floor = Floor(trainer, cfg)
        rec: dict[str, list[float]] = defaultdict(list)
        for i in range(warmup + repeats):
            timers.now.clear()
            timers.active = True
            t0 = time.perf_counter()
            batch = trainer.rollout_batch()
            trainer.update(batch)
            step = time.perf_counter() - t0
            timers.active = False
            gen, fb, nf = floor.generate(), floor.forward_backward(), floor.forward_nograd()
            tag = "warm-up" if i < warmup else ""
            print(
                f"  [{cfg.name}/β={beta}] {i + 1}/{warmup + repeats}: step {step:.3f}s  floor gen {gen:.3f}s "
                f"+ fwd/bwd {fb:.3f}s  (no-grad fwd {nf:.3f}s) {tag}",
                file=sys.stderr,
                flush=True,
            )
            if i < warmup:
                continue
            now = timers.now
            rec["step"].append(step)
            rec["floor_gen"].append(gen)
            rec["floor_fb"].append(fb)
            rec["floor_nf"].append(nf)
            rec["len"].append(batch.metrics["response_length"])
            rec["floor_len"].append(floor.mean_length())
            for key, _ in PARTS:
                if key not in ("rollout_other", "update_other"):
                    rec[key].append(now.get(key, 0.0))
            rec["rollout_other"].append(
                now["rollout_batch"] - now["generation"] - now["score"] - now.get("nograd_fwd", 0.0)
            )
            rec["update_other"].append(
                now["update"] - now["train_fwd"] - now["backward"] - now["clip"] - now["optimizer"]
            )
        prof_text = ""
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(profile):
                trainer.update(trainer.rollout_batch())
            prof.disable()
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf).strip_dirs()
            stats.sort_stats("cumulative").print_stats(35)
            stats.sort_stats("tottime").print_stats(20)
            prof_text = buf.getvalue()
    return {"rec": rec, "profile": prof_text}


def report(results: list[tuple[BenchConfig, str, dict[str, Any]]], args: argparse.Namespace) -> str:
    out = [
        f"# grpolab step vs its physical floor ({datetime.date.today().isoformat()}, {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} torch thread; "
        f"{args.warmup} warm-up + {args.repeats} measured repeats, interleaved; medians)",
        "",
        "grpolab: preset grpo (ppo_clip ε 0.2, seq_mean_token_mean, group-scaled advantages), num_iterations 1, "
        "temperature 1, AdamW, clip 1.0, fp32; variant kl = k3 KL β 0.04 with a reference model, nokl = "
        "regularizers []. Floor: bare model.generate of a same-shape batch + one forward/backward of it.",
        "",
    ]
    for cfg in {c.name: c for c, _, _ in results}.values():
        out.append(
            f"- `{cfg.name}`: {cfg.label}; {cfg.num_prompts} × {cfg.num_generations} = {cfg.batch} completions, "
            f"max_new_tokens {cfg.max_new_tokens}"
        )
    out += [
        "",
        "| config | variant | grpolab s/step | floor gen s | floor fwd+bwd s | floor s | ratio | paired ratio | "
        "ratio vs floor + no-grad fwd | target ≤ 1.25 met? | mean len grpolab / floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cfg, variant, res in results:
        r = res["rec"]
        floor = med(r["floor_gen"]) + med(r["floor_fb"])
        ratio = med(r["step"]) / floor
        paired = med([s / (g + f) for s, g, f in zip(r["step"], r["floor_gen"], r["floor_fb"], strict=True)])
        with_ref = med(r["step"]) / (floor + med(r["floor_nf"]))
        out.append(
            f"| {cfg.name} | {variant} | {med(r['step']):.3f} | {med(r['floor_gen']):.3f} | {med(r['floor_fb']):.3f} | "
            f"{floor:.3f} | {ratio:.2f} | {paired:.2f} | {with_ref:.2f} | {'yes' if ratio <= 1.25 else 'NO'} | "
            f"{statistics.fmean(r['len']):.1f} / {statistics.fmean(r['floor_len']):.1f} |"
        )
    out += ["", "Breakdown of grpolab's step (median ms per step; % of the median step):", ""]
    header = "| part | " + " | ".join(f"{c.name}/{v}" for c, v, _ in results) + " |"
    out += [header, "|---|" + "---|" * len(results)]
    for key, label in PARTS:
        cells = []
        for _, _, res in results:
            r = res["rec"]
            cells.append(f"{1000 * med(r[key]):.1f} ({100 * med(r[key]) / med(r['step']):.0f}%)")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [f"{1000 * med(res['rec']['step']):.1f}" for _, _, res in results]
    out.append("| **step (median)** | " + " | ".join(cells) + " |")
    floor_nf = [f"{1000 * med(res['rec']['floor_nf']):.1f}" for _, _, res in results]
    out.append("| (floor: one no-grad forward of the batch) | " + " | ".join(floor_nf) + " |")
    out.append("")
    out.append(
        "Medians of parts need not add up to the median step; 'of which model.generate' is inside the line above."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="tiny,large", help="comma-separated: tiny, large (default both)")
    p.add_argument("--variants", default="kl,nokl", help="comma-separated: kl (β 0.04), nokl (β 0); default both")
    p.add_argument("--repeats", type=int, default=10, help="measured repeats (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up repeats, excluded (default 2)")
    p.add_argument("--profile", type=int, default=0, help="cProfile this many extra grpolab steps per run (0 = off)")
    p.add_argument("--tiny-model", default=None, help="folder to use instead of the built-in tiny-arith")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    quiet_single_thread()

    results = []
    with tempfile.TemporaryDirectory(prefix="grpolab-bench-models-") as workdir:
        configs = make_configs(args.configs.split(","), Path(workdir), tiny_model=args.tiny_model)
        for cfg in configs:
            for variant in args.variants.split(","):
                if variant not in VARIANTS:
                    raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
                res = measure(
                    cfg,
                    VARIANTS[variant],
                    repeats=args.repeats,
                    warmup=args.warmup,
                    profile=args.profile,
                    seed=args.seed,
                )
                results.append((cfg, variant, res))
    print(report(results, args))
    for cfg, variant, res in results:
        if res["profile"]:
            print(f"\n## cProfile: {cfg.name}/{variant}, {args.profile} steps\n\n```\n{res['profile']}```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
