"""Warm-start the built-in ``tiny-clinical`` base model from scratch on CPU and write it into the package.

What it builds: a small ``LlamaForCausalLM`` (default hidden 128, 2 layers, 4 heads of 32, MLP 256, tied
embeddings, 256 positions; 340,864 parameters) over ``grpolab.models.char_tokenizer(chars=TEXT_CHARS)``, trained by
next-token prediction on worked cases of the TRAIN split of the ``clinical`` task (default split: ``n_train=2000,
n_eval=200, seed=0``; the eval cases are never seen): prompt = the vignette and the instruction, target = the
answer ``findings: ...; ddx: ...; dx: ...`` then EOS.

Why it is deliberately imperfect: the model is the base model of the ``crpo`` demo and tests, so it must be right
only part of the time when sampled while the right answer stays likely, and it must err in the ways the three
rewards measure. As ``tiny-arith`` (``scripts/pretrain_tiny.py``), the construction is label noise in two phases:

1. steps 1..``--clean-steps``: gold answers only (the model learns the format, copying findings and the rules);
2. the remaining steps: every time a case is drawn, its answer is an imperfect trace with independent,
   clinically plausible mistakes (``grpolab.data.clinical.imperfect_answer``: a look-alike diagnosis, the missing
   "textbook" finding cited in an atypical case, a look-alike's finding invented, a key finding missed, a
   differential dropped or swapped), drawn afresh each time at the rates ``ERROR_RATES``.

The loss covers the answer tokens and EOS, plus the prompt tokens at weight ``--prompt-weight`` (reading the
vignette as language helps a model this small learn the finding words it must copy). AdamW with linear warm-up
and cosine decay, one thread, ``torch.use_deterministic_algorithms(True)``, everything seeded.

Measurements (printed and written to ``warmstart_report.json`` in the output folder): on the 200 held-out eval
cases, with ``grpolab.trainer.loop.evaluate`` (the numbers ``grpolab train`` logs as ``eval/...``): greedy, and
sampled at temperature 1 and 0.6 (CRPO's rollout temperature): ``pass@1`` (= dx accuracy) and the means of the
three rewards; also the train time and the weight file. The script fails (exit 1) unless the temperature-1 dx
accuracy is in [0.2, 0.8] and the greedy one is at least 0.5 (``--no-check`` skips it).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/warmstart_clinical.py     # writes src/grpolab/models/tiny_clinical
    OMP_NUM_THREADS=1 .venv/bin/python scripts/warmstart_clinical.py --out /tmp/tc --steps 100 --no-check
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _tiny_common import deterministic, lr_at, save_with_report  # scripts/_tiny_common.py
from torch import Tensor

from grpolab.data.clinical import (
    DEFAULT_N_EVAL,
    DEFAULT_N_TRAIN,
    DEFAULT_SEED,
    ERROR_RATES,
    MAX_NEW_TOKENS,
    clinical_task,
    imperfect_answer,
)
from grpolab.models import TEXT_CHARS, char_tokenizer, set_special_token_ids, tiny_llama_config
from grpolab.trainer.loop import evaluate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "grpolab" / "models" / "tiny_clinical"
MAX_POSITIONS = 256  # longest prompt + BOS (151) + MAX_NEW_TOKENS (104) = 255


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's tiny_clinical)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and mistakes (default 0)")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps (default 600)")
    p.add_argument("--clean-steps", type=int, default=400, help="first steps on gold answers only (default 400)")
    p.add_argument("--batch-size", type=int, default=16, help="cases per step (default 16)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps (default 50)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices (default 0.1)")
    p.add_argument("--prompt-weight", type=float, default=0.2, help="loss weight of prompt tokens (default 0.2)")
    p.add_argument("--hidden", type=int, default=128, help="model width (default 128)")
    p.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    p.add_argument("--eval-every", type=int, default=0, help="print greedy eval every N steps (0: never)")
    p.add_argument("--eval-cases", type=int, default=DEFAULT_N_EVAL, help="held-out cases measured (default 200)")
    p.add_argument("--no-check", action="store_true", help="do not fail when the accuracies are out of range")
    return p.parse_args(argv)


def make_batch(
    cases: list[dict],
    rng: random.Random,
    *,
    batch_size: int,
    noisy: bool,
    prompt_weight: float,
    stoi: dict[str, int],
    bos: int,
    eos: int,
    pad: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ids [B, L], next-token targets [B, L] and loss weights [B, L] (0 on BOS and padding)."""
    seqs, weights = [], []
    for _ in range(batch_size):
        case = cases[rng.randrange(len(cases))]
        answer = imperfect_answer(case, rng)[0] if noisy else case["answer"]
        prompt = [stoi[c] for c in case["prompt"]]
        target = [stoi[c] for c in answer] + [eos]
        seqs.append([bos, *prompt, *target])
        weights.append([0.0] + [prompt_weight] * len(prompt) + [1.0] * len(target))  # weight of predicting token t
    width = max(len(s) for s in seqs)
    ids = torch.full((batch_size, width), pad, dtype=torch.long)  # [B, L]
    w = torch.zeros(batch_size, width)  # [B, L]: weight of the loss on predicting token t from tokens < t
    for i, (s, ws) in enumerate(zip(seqs, weights, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        w[i, : len(ws)] = torch.tensor(ws)
    return ids, ids.clone(), w


def measure(model, tokenizer, task, *, cases: int, seed: int) -> dict[str, dict[str, float]]:
    """``evaluate`` greedy, at temperature 1 and at 0.6 on the first ``cases`` eval cases."""
    out = {}
    for label, temperature in (("greedy", 0.0), ("temp1", 1.0), ("temp0.6", 0.6)):
        m = evaluate(
            model,
            tokenizer,
            task,
            num_prompts=cases,
            samples=1 if temperature == 0 else 2,
            temperature=temperature,
            max_new_tokens=MAX_NEW_TOKENS,
            seed=seed,
        )
        out[label] = {k.removeprefix("eval/"): round(v, 4) for k, v in m.items() if not k.endswith("errors")}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    deterministic(args.seed)

    task = clinical_task(n_train=DEFAULT_N_TRAIN, n_eval=DEFAULT_N_EVAL, seed=DEFAULT_SEED)
    train = list(task.train)
    held_out = {c["vignette"] for c in task.eval}
    assert not held_out & {c["vignette"] for c in train}, "an eval vignette leaked into the warm-start data"

    tokenizer = char_tokenizer(chars=TEXT_CHARS, model_max_length=MAX_POSITIONS)
    stoi = tokenizer.get_vocab()
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id

    from transformers import LlamaForCausalLM

    config = tiny_llama_config(
        tokenizer, hidden=args.hidden, layers=args.layers, heads=4, intermediate=2 * args.hidden,
        max_positions=MAX_POSITIONS,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    set_special_token_ids(model, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; train cases {len(train)}, held-out {len(held_out)}", flush=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]  # no decay on norms
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    rng = random.Random(args.seed)
    t0 = time.time()
    running = None
    for step in range(args.steps):
        model.train()
        ids, targets, weights = make_batch(
            train,
            rng,
            batch_size=args.batch_size,
            noisy=step >= args.clean_steps,
            prompt_weight=args.prompt_weight,
            stoi=stoi,
            bos=bos,
            eos=eos,
            pad=pad,
        )  # [B, L] each
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps=args.steps, warmup=args.warmup, lr=args.lr)
        logits = model(input_ids=ids).logits  # [B, L, V]; right padding needs no attention mask (causal)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten(), reduction="none")  # [B*(L-1)]
        w = weights[:, 1:].flatten()  # [B*(L-1)]
        loss = (nll * w).sum() / w.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % 25 == 0 or step == 0:
            print(f"step {step + 1:5d}  loss {running:.4f}  {time.time() - t0:6.1f}s", flush=True)
        if args.eval_every and (step + 1) % args.eval_every == 0:
            m = evaluate(model, tokenizer, task, num_prompts=100, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
            print("           greedy: " + ", ".join(f"{k[5:]} {v:.3f}" for k, v in m.items() if "reward/" in k))
    train_time = time.time() - t0

    model.eval()
    report = {
        "seed": args.seed,
        "steps": args.steps,
        "clean_steps": args.clean_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "prompt_weight": args.prompt_weight,
        "error_rates": dict(ERROR_RATES),
        "split": {"n_train": DEFAULT_N_TRAIN, "n_eval": DEFAULT_N_EVAL, "seed": DEFAULT_SEED},
        "architecture": {"hidden": args.hidden, "layers": args.layers, "heads": 4, "max_positions": MAX_POSITIONS},
        "parameters": n_params,
        "final_train_loss": round(running, 4),
        "train_time_s": round(train_time, 1),
        "eval_cases": args.eval_cases,
        "eval_samples_per_case": {"greedy": 1, "temp1": 2, "temp0.6": 2},
        "eval": measure(model, tokenizer, task, cases=args.eval_cases, seed=args.seed),
    }
    save_with_report(model, tokenizer, args.out, report, "warmstart_report.json", start)
    temp1, greedy = report["eval"]["temp1"]["pass@1"], report["eval"]["greedy"]["pass@1"]
    if not args.no_check and not (0.2 <= temp1 <= 0.8 and greedy >= 0.5):
        print(
            f"dx accuracy at temperature 1 {temp1:.3f} (want 0.2-0.8), greedy {greedy:.3f} (want >= 0.5)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
