"""Pre-train the built-in ``tiny-arith`` base model from scratch on CPU and write it into the package.

What it builds: a 4-layer ``LlamaForCausalLM`` (hidden 128, 4 heads of 32, MLP 256, tied embeddings, 64
positions) over the character tokenizer of ``grpolab.models.char_tokenizer``, trained by supervised next-token
prediction on the TRAIN split of the ``arith`` task (``n_eval=500, seed=0``; the eval split is never seen).

Why it is deliberately imperfect: the model is the base model of RL tests and demos, so it must be right only
some of the time when sampled at temperature 1 (the issue asks for 20-60 %) while the right answer stays the
mode of its distribution, so that RL has something to sharpen. The construction is label noise, in two phases:

1. steps 1..``--clean-steps`` (default 1100): right answers only. A small transformer learns two-digit addition
   and subtraction (most-significant digit first) through a plateau and then a sudden rise of held-out accuracy
   ("grokking"); clean labels shorten the plateau, which keeps the whole run at a few CPU minutes.
2. the remaining steps (default 900): each time a training example is drawn, its answer is replaced with
   probability ``--noise`` (default 0.55) by a plausible wrong answer (``grpolab.data.arith.wrong_answer``: one
   digit changed, or ±1, or ±10; never the right one). The corruption is drawn afresh every time, so the target
   of every problem is "right with probability 0.45, else a nearby wrong answer spread over several candidates":
   the model's temperature-1 accuracy moves towards 1 - noise while greedy decoding (the mode) stays mostly right.

This is a synthetic, label-noise construction, not a model that "half knows" arithmetic in any deeper sense: RL
on it mostly learns to sharpen (lower the entropy of) a distribution whose mode is already right.

Training: loss only on the answer tokens and EOS (prompt tokens masked out), AdamW with linear warm-up and
cosine decay, one thread, ``torch.use_deterministic_algorithms(True)``, everything seeded: a re-run on the same
machine and library versions writes bit-identical weights (the report holds their SHA-256).

Measurements (printed, and written to ``pretrain_report.json`` in the output folder): on the 500 held-out eval
problems, the accuracy of temperature-1 samples (full distribution: no top-k, no top-p; mean over ``--samples``
seeded samples per problem) and the greedy accuracy; also the same on 500 train problems, the train time and
the weight file size. The script fails (exit 1) if the temperature-1 eval accuracy falls outside [0.2, 0.6].

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/pretrain_tiny.py            # writes src/grpolab/models/tiny_arith
    OMP_NUM_THREADS=1 .venv/bin/python scripts/pretrain_tiny.py --out /tmp/tiny --steps 300 --clean-steps 200 --no-check
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

from grpolab.data.arith import DEFAULT_N_EVAL, DEFAULT_SEED, arith_problems, format_prompt, solve, wrong_answer
from grpolab.models import char_tokenizer, set_special_token_ids, tiny_llama_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "grpolab" / "models" / "tiny_arith"
MAX_NEW_TOKENS = 5  # the longest answer ("198", "-99") is 3 characters, then EOS; one spare token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's tiny_arith)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and corruption (default 0)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--weight-decay", type=float, default=0.5, help="AdamW weight decay (default 0.5)")
    p.add_argument("--noise", type=float, default=0.55, help="probability an answer is replaced by a wrong one")
    p.add_argument(
        "--clean-steps", type=int, default=1100, help="first steps trained on right answers only (default 1100)"
    )
    p.add_argument("--samples", type=int, default=4, help="temperature-1 samples per eval problem (default 4)")
    p.add_argument("--eval-every", type=int, default=0, help="print greedy eval accuracy every N steps (0: never)")
    p.add_argument("--no-check", action="store_true", help="do not fail when temp-1 accuracy is out of [0.2, 0.6]")
    return p.parse_args(argv)


def encode_example(prompt: str, answer: str, stoi: dict[str, int], bos: int, eos: int) -> tuple[list[int], int]:
    """Token ids ``[bos, prompt..., answer..., eos]`` and the number of leading tokens (bos + prompt) not trained."""
    ids = [bos, *(stoi[c] for c in prompt), *(stoi[c] for c in answer), eos]
    return ids, 1 + len(prompt)


def make_batch(
    problems: list[tuple[int, str, int]],
    rng: random.Random,
    *,
    batch_size: int,
    noise: float,
    stoi: dict[str, int],
    bos: int,
    eos: int,
    pad: int,
) -> tuple[Tensor, Tensor]:
    """A training batch: right-padded ids [B, T] and labels [B, T] (-100 on bos, prompt and padding)."""
    rows, starts = [], []
    for _ in range(batch_size):
        a, op, b = problems[rng.randrange(len(problems))]
        value = solve(a, op, b)
        if rng.random() < noise:  # the label-noise construction: a plausible wrong answer, drawn afresh each time
            value = wrong_answer(value, rng)
        ids, start = encode_example(format_prompt(a, op, b), str(value), stoi, bos, eos)
        rows.append(ids)
        starts.append(start)
    width = max(len(r) for r in rows)
    ids = torch.full((batch_size, width), pad, dtype=torch.long)  # [B, T]
    labels = torch.full((batch_size, width), -100, dtype=torch.long)  # [B, T]
    for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, start : len(row)] = ids[i, start : len(row)]  # loss on the answer tokens and EOS only
    return ids, labels


@torch.no_grad()
def measure_accuracy(
    model: torch.nn.Module,
    tokenizer,
    problems: list[tuple[int, str, int]],
    *,
    sample: bool,
    samples: int = 1,
    seed: int = 0,
    batch_size: int = 500,
) -> float:
    """Fraction of right answers: greedy (``sample=False``) or temperature-1 full-distribution samples (mean)."""
    model.eval()
    prompts = [format_prompt(*p) for p in problems]
    answers = [str(solve(*p)) for p in problems]
    right, total = 0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True)  # left padding
            kwargs = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {}
            out = model.generate(
                **enc,
                max_new_tokens=MAX_NEW_TOKENS,
                num_return_sequences=samples if sample else 1,
                **({"do_sample": False} | kwargs),
            )  # [b * n, T + new]
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            n = samples if sample else 1
            for i, text in enumerate(texts):
                right += text.strip() == answers[start + i // n]
                total += 1
    return right / total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    deterministic(args.seed)

    tokenizer = char_tokenizer()
    stoi = tokenizer.get_vocab()
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    train = arith_problems("train", n_eval=DEFAULT_N_EVAL, seed=DEFAULT_SEED)
    held_out = arith_problems("eval", n_eval=DEFAULT_N_EVAL, seed=DEFAULT_SEED)
    assert not set(train) & set(held_out), "the eval split leaked into the pre-training data"

    from transformers import LlamaForCausalLM

    config = tiny_llama_config(tokenizer, hidden=128, layers=4, heads=4, intermediate=256, max_positions=64)
    model = LlamaForCausalLM(config)
    set_special_token_ids(model, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; train problems {len(train)}, held-out {len(held_out)}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]  # no decay on norms
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
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
        ids, labels = make_batch(
            train,
            rng,
            batch_size=args.batch_size,
            noise=0.0 if step < args.clean_steps else args.noise,
            stoi=stoi,
            bos=bos,
            eos=eos,
            pad=pad,
        )  # [B, T], [B, T]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps=args.steps, warmup=args.warmup, lr=args.lr)
        logits = model(input_ids=ids).logits  # [B, T, V]; right padding needs no attention mask (causal)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 100 == 0 or step == 0:
            print(f"step {step + 1:5d}  loss {running:.4f}  {time.time() - t0:6.1f}s", flush=True)
        if args.eval_every and (step + 1) % args.eval_every == 0:
            acc = measure_accuracy(model, tokenizer, held_out, sample=False)
            print(f"           greedy held-out accuracy {acc:.3f}", flush=True)
    train_time = time.time() - t0

    model.eval()
    report = {
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "noise_rate": args.noise,
        "clean_steps": args.clean_steps,
        "split": {"n_eval": DEFAULT_N_EVAL, "seed": DEFAULT_SEED, "train_problems": len(train)},
        "parameters": n_params,
        "final_train_loss": round(running, 4),
        "train_time_s": round(train_time, 1),
        "eval_samples_per_problem": args.samples,
        "eval_temp1_accuracy": measure_accuracy(model, tokenizer, held_out, sample=True, samples=args.samples),
        "eval_greedy_accuracy": measure_accuracy(model, tokenizer, held_out, sample=False),
        "train_temp1_accuracy": measure_accuracy(model, tokenizer, train[:500], sample=True, samples=args.samples),
        "train_greedy_accuracy": measure_accuracy(model, tokenizer, train[:500], sample=False),
    }
    save_with_report(model, tokenizer, args.out, report, "pretrain_report.json", start)
    if not args.no_check and not 0.2 <= report["eval_temp1_accuracy"] <= 0.6:
        print(f"temperature-1 accuracy {report['eval_temp1_accuracy']:.3f} is outside [0.2, 0.6]", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
