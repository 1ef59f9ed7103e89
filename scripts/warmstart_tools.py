"""Warm-start the built-in ``tiny-tools`` model on tool-use traces of the ``search`` task and write it into the package.

What it builds: a small ``LlamaForCausalLM`` (hidden 64, 4 layers, 2 heads of 32, MLP 128, tied embeddings, 512
positions; ``--hidden``/``--layers``/``--heads``) over ``char_tokenizer(chars=TEXT_CHARS)``, trained from scratch
by next-token prediction on whole tool-use transcripts in the ``ToolEnv`` protocol (``grpolab.envs.search``):
the question, the model's turns (``<search>..</search>``, ``<calc>..</calc>``, ``<answer>..</answer>`` + EOS)
and the environment's replies (``<result>..</result>``). Every reply is produced by a real ``ToolEnv.step``, so
an observation is exactly the text the environment returns during RL.

The model must *copy*: queries from the question, answers from the search result or the note. A char-level
model learns copying (induction) only after a plateau, so training has two phases:

1. ``--drill-steps`` (default 1000) of copy drills: right episodes with at most one call (a given question
   answered directly or after a search, a lookup with one search, a calc with one call) about *fresh invented
   worlds* (the corpus generator with new seeds, each world's own search engine), with the loss on the model's
   turns and the replies (never on the prompt: the model must not learn to write questions or notes). Names are
   new every time, so memorising is useless and copying is the only way to lower the loss.
2. ``--steps`` (default 350) of the noisy mixture that makes the model a useful RL base: at temperature 1 it must
   call tools only some of the time, make unnecessary calls some of the time and be right only part of the
   time. Each trace is drawn afresh from ``TRACE_MIX``: lookups (one search then the right answer; a redundant
   second, reworded search; a guess without searching; a search then a wrong answer), given questions (direct
   right answer; one or two unnecessary searches; a wrong answer) and calc questions (one call; a redundant second
   call; a guessed number; a call then a wrong number). Wrong answers after a search or a note copy the wrong
   span (the place's name), so a mistake is a wrong choice rather than a blur over characters. A ``--synthetic``
   fraction (default 0.75) of these traces are about fresh invented worlds (loss also on their replies), the rest
   about the task's TRAIN rows (loss on the model's turns and EOS only, as in RL).

Held-out facts never appear in a trace with a loss on it: the eval split asks only about them, invented worlds
skip every name of the shipped corpus, and a real row's replies carry no loss.

Measurements (printed and written to ``warmstart_report.json``): on the 128 held-out eval rows, episodes sampled
at temperature 1 (full distribution) with a small built-in episode runner (``run_episodes``: the same protocol as
``grpolab.rollout.multiturn``): accuracy (``search_em``), tool calls per episode, format rate, per kind; also
greedy. The script fails (exit 1) when the temperature-1 eval accuracy is outside [0.1, 0.8] or the mean number of
tool calls outside [0.3, 1.8] (``--no-check`` skips this).

Training: AdamW with warm-up and cosine decay over both phases, one thread,
``torch.use_deterministic_algorithms(True)``, all seeded: a re-run on the same machine and library versions
writes bit-identical weights (the report holds their SHA-256).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/warmstart_tools.py                 # writes src/grpolab/models/tiny_tools
    OMP_NUM_THREADS=1 .venv/bin/python scripts/warmstart_tools.py --write-corpus  # also (re)writes facts.jsonl
    OMP_NUM_THREADS=1 .venv/bin/python scripts/warmstart_tools.py --out /tmp/tt --drill-steps 50 --steps 50 --no-check
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _tiny_common import deterministic, lr_at, save_with_report  # scripts/_tiny_common.py
from torch import Tensor

from grpolab.data.search import (
    MAX_NEW_TOKENS,
    extract_answer,
    generate_facts,
    load_facts,
    normalize_answer,
    search_em,
    search_format,
    search_rows,
    search_task,
    tool_calls,
)
from grpolab.envs.search import ToolEnv
from grpolab.envs.tools import FACTS_PATH, Calculator, SearchEngine
from grpolab.models import TEXT_CHARS, char_tokenizer, set_special_token_ids, tiny_llama_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "grpolab" / "models" / "tiny_tools"
MAX_POSITIONS = 512

#: Trace kinds per question kind and their probabilities: (name, probability, tool calls, answer right).
TRACE_MIX: dict[str, list[tuple[str, float, int, bool]]] = {
    "lookup": [
        ("call_once", 0.45, 1, True),
        ("call_twice", 0.30, 2, True),
        ("guess", 0.10, 0, False),
        ("call_wrong", 0.15, 1, False),
    ],
    "given": [
        ("direct", 0.25, 0, True),
        ("call_once", 0.45, 1, True),
        ("call_twice", 0.15, 2, True),
        ("guess", 0.15, 0, False),
    ],
    "calc": [
        ("call_once", 0.55, 1, True),
        ("call_twice", 0.20, 2, True),
        ("guess", 0.15, 0, False),
        ("call_wrong", 0.10, 1, False),
    ],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's tiny_tools)")
    p.add_argument("--write-corpus", action="store_true", help="(re)write the shipped corpus facts.jsonl first")
    p.add_argument("--seed", type=int, default=1, help="seed of initialisation, traces and batches (default 1)")
    p.add_argument("--drill-steps", type=int, default=1000, help="phase 1: copy-drill steps (default 1000)")
    p.add_argument("--steps", type=int, default=350, help="phase 2: noisy-trace steps (default 350)")
    p.add_argument("--drill-batch-size", type=int, default=32, help="drills per phase-1 step (default 32)")
    p.add_argument("--batch-size", type=int, default=32, help="traces per phase-2 step (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps (default 50)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices (default 0.1)")
    p.add_argument("--hidden", type=int, default=64, help="model width (default 64)")
    p.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    p.add_argument("--heads", type=int, default=2, help="attention heads (default 2: heads of 32 dimensions)")
    p.add_argument("--bucket", type=int, default=16, help="batches drawn at once and grouped by length (default 16)")
    p.add_argument(
        "--context-weight",
        type=float,
        default=1.0,
        help="loss weight of reply tokens of traces in invented worlds (default 1; 0 on real rows and prompts)",
    )
    p.add_argument(
        "--synthetic", type=float, default=0.75, help="fraction of traces about fresh invented facts (default 0.75)"
    )
    p.add_argument("--top-k", type=int, default=1, help="search hits per query of the task's env (default 1)")
    p.add_argument("--samples", type=int, default=2, help="temperature-1 samples per eval row (default 2)")
    p.add_argument("--log-every", type=int, default=50, help="print the loss every this many steps (default 50)")
    p.add_argument("--eval-every", type=int, default=0, help="greedy eval every this many steps (0: never)")
    p.add_argument(
        "--sharpen", type=float, default=2.0, help="logit scale k baked into the final norm (default 2: T = 0.5)"
    )
    p.add_argument("--no-check", action="store_true", help="do not fail on accuracy / tool-call bounds")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------------ traces
def reworded(query: str, rng: random.Random) -> str:
    """Another wording of a lookup query (``"capital of Velora"`` -> ``"Velora capital"``), for redundant calls."""
    attribute, _, entity = query.partition(" of ")
    return rng.choice([f"{entity} {attribute}", f"the {attribute} of {entity}", query])


def wrong_value(row: dict[str, Any], pool: dict[str, list[str]], rng: random.Random, *, seen: bool) -> str:
    """A plausible wrong answer. For a lookup or given question whose answer is in the context (``seen``: after a
    search, or in the note), a wrong span copied from the context, the place's name, so that a mistake is one
    wrong choice of what to copy rather than a blur over every character; otherwise another value of the same
    relation. For calc questions a nearby number."""
    if seen and row["kind"] != "calc":
        return row["query"].split(" of ")[-1]
    if row["kind"] == "calc":
        value = int(row["answer"])
        while True:
            wrong = value + rng.choice((-10, -2, -1, 1, 2, 10, 100))
            if wrong != value:
                return str(wrong)
    attribute = row["query"].split(" of ")[0].removeprefix("the ")
    while True:
        wrong = rng.choice(pool[attribute])
        if normalize_answer(wrong) != normalize_answer(row["answer"]):
            return wrong


def make_trace(
    row: dict[str, Any], env: ToolEnv, pool: dict[str, list[str]], rng: random.Random
) -> list[tuple[str, bool]]:
    """One transcript of ``row`` as segments ``(text, written_by_model)``; replies come from ``env.step``."""
    mix = TRACE_MIX[row["kind"]]
    _, _, calls, right = rng.choices(mix, weights=[m[1] for m in mix])[0]
    tag = "calc" if row["kind"] == "calc" else "search"
    segments: list[tuple[str, bool]] = []
    state = env.reset(row)
    for i in range(calls):
        query = row["query"] if i == 0 or tag == "calc" else reworded(row["query"], rng)
        turn = f"<{tag}>{query}</{tag}>"
        segments.append((turn, True))
        segments.append((env.step(state, row, turn).text, False))
    seen = calls > 0 or row["kind"] == "given"
    answer = row["answer"] if right else wrong_value(row, pool, rng, seen=seen)
    segments.append((f"<answer>{answer}</answer>", True))
    return segments


def encode_trace(
    prompt: str, segments: list[tuple[str, bool]], stoi: dict[str, int], *, bos: int, eos: int, context_weight: float
) -> tuple[list[int], list[float]]:
    """Token ids (BOS, prompt, segments, EOS) and per-token loss weights for predicting each id: 1 on the model's
    turns and EOS, ``context_weight`` on the environment's replies, 0 on the prompt."""
    ids, weights = [bos], [0.0]
    for ch in prompt:  # never trained: the model must not learn to write questions or notes itself
        ids.append(stoi[ch])
        weights.append(0.0)
    for text, by_model in segments:
        for ch in text:
            ids.append(stoi[ch])
            weights.append(1.0 if by_model else context_weight)
    ids.append(eos)
    weights.append(1.0)
    return ids, weights


@dataclass
class World:
    """Rows to write traces for, the environment that answers their calls, and wrong answers per relation."""

    rows: list[dict[str, Any]]
    env: ToolEnv
    pool: dict[str, list[str]]


def world_of(rows: list[dict[str, Any]], env: ToolEnv) -> World:
    """A World over ``rows``: wrong answers of a relation are drawn from the lookup answers of that relation."""
    pool: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "lookup":
            pool[r["query"].split(" of ")[0]].append(r["answer"])
    return World(rows, env, pool)


def synthetic_world(
    rng: random.Random, *, reserved: set[str], eval_calc: set[str], top_k: int, entities: int = 64
) -> World:
    """A fresh invented world: ``entities`` new places with five new facts each (the corpus generator with a new
    seed; names of the shipped corpus are skipped), their lookup and given rows, an env whose search engine holds
    exactly these facts, and calc rows on random problems (never an eval problem). Traces on fresh names cannot be
    answered from memory: they teach the model to copy from the prompt and the search results."""
    facts = [
        f | {"held_out": False}
        for f in generate_facts(entities=entities, seed=rng.randrange(2**31))
        if f["entity"].lower() not in reserved and f["value"].lower() not in reserved
    ]
    env = ToolEnv(search=SearchEngine(facts, top_k=top_k), calculator=Calculator(), max_turns=3)
    rows = [r for r in search_rows("train", facts=facts, seed=rng.randrange(2**31)) if r["kind"] != "calc"]
    for _ in range(len(rows) // 2):
        op = rng.choice("+-*")
        a, b = rng.randint(10, 99), rng.randint(2, 9) if op == "*" else rng.randint(10, 99)
        expr = f"{a}{op}{b}"
        if expr not in eval_calc:
            prompt = f"Q: What's {expr}?\n"
            rows.append({"prompt": prompt, "answer": Calculator()(expr), "kind": "calc", "query": expr})
    return world_of(rows, env)


def pad_batches(
    seqs: list[tuple[list[int], list[float]]], rng: random.Random, *, batch_size: int, pad: int
) -> list[tuple[Tensor, Tensor]]:
    """Sequences grouped by length into right-padded batches (ids [B, T], loss weights [B, T]), in random order."""
    seqs = sorted(seqs, key=lambda s: len(s[0]))
    batches = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(s[0]) for s in chunk)
        if width > MAX_POSITIONS:
            raise ValueError(f"a trace has {width} tokens, more than the model's {MAX_POSITIONS} positions")
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # [B, T]
        weights = torch.zeros(len(chunk), width)  # [B, T]
        for i, (seq, w) in enumerate(chunk):
            ids[i, : len(seq)] = torch.tensor(seq)
            weights[i, : len(w)] = torch.tensor(w)
        batches.append((ids, weights))
    rng.shuffle(batches)
    return batches


def make_drills(
    make_world: Any,
    rng: random.Random,
    stoi: dict[str, int],
    *,
    batch_size: int,
    bucket: int,
    bos: int,
    eos: int,
    pad: int,
) -> list[tuple[Tensor, Tensor]]:
    """Phase 1: copy drills, right one-call episodes of fresh invented worlds: ``given`` questions answered
    directly (``Q: What's the river of Velora?\nNote: The river of Velora is Amsel.\n<answer>Amsel</answer>``)
    or, half of them, after one (unnecessary) search, so that drills do not teach the given questions' choice;
    ``lookup`` questions with one search and ``calc`` questions with one calculator call; the loss
    is on the model's turns and the replies. Every name is new, so the only way to predict an answer (or a query)
    is to copy it from the note, the question or the tool's result: the model learns copying (induction) on
    clean, short episodes before it meets the noisy mixture of phase 2."""
    seqs: list[tuple[list[int], list[float]]] = []
    while len(seqs) < batch_size * bucket:
        world = make_world()
        for row in world.rows:
            if len(seqs) >= batch_size * bucket:
                break
            tag = "calc" if row["kind"] == "calc" else "search"
            segments: list[tuple[str, bool]] = []
            if row["kind"] != "given" or rng.random() < 0.5:  # half the given drills search (unnecessarily)
                turn = f"<{tag}>{row['query']}</{tag}>"
                segments += [(turn, True), (world.env.step(world.env.reset(row), row, turn).text, False)]
            segments.append((f"<answer>{row['answer']}</answer>", True))
            seqs.append(encode_trace(row["prompt"], segments, stoi, bos=bos, eos=eos, context_weight=1.0))
    return pad_batches(seqs, rng, batch_size=batch_size, pad=pad)


def make_batches(
    real: World,
    make_world: Any,
    rng: random.Random,
    stoi: dict[str, int],
    *,
    synthetic: float,
    batch_size: int,
    bucket: int,
    bos: int,
    eos: int,
    pad: int,
    context_weight: float,
) -> list[tuple[Tensor, Tensor]]:
    """``bucket`` batches of fresh traces, grouped by length (less padding), in random order: each is right-padded
    ids [B, T] and loss weights [B, T] (the weight of predicting position t from position t-1). A trace is about a
    row of a fresh invented world (``make_world()``, one per call) with probability ``synthetic``, else about a
    train row of the task."""
    fresh = make_world()
    seqs = []
    for _ in range(batch_size * bucket):
        world = fresh if rng.random() < synthetic else real
        row = world.rows[rng.randrange(len(world.rows))]
        segments = make_trace(row, world.env, world.pool, rng)
        # prompts and replies carry loss only in invented worlds: a real trace's reply could show a held-out fact
        weight = context_weight if world is fresh else 0.0
        seqs.append(encode_trace(row["prompt"], segments, stoi, bos=bos, eos=eos, context_weight=weight))
    return pad_batches(seqs, rng, batch_size=batch_size, pad=pad)


# --------------------------------------------------------------------------------------------- episode runner
@torch.no_grad()
def run_episodes(
    model: Any,
    tokenizer: Any,
    env: ToolEnv,
    rows: list[dict[str, Any]],
    *,
    samples: int,
    greedy: bool,
    seed: int,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> list[str]:
    """Transcripts (completion texts) of ``samples`` episodes per row under the ``ToolEnv`` protocol.

    A small stand-alone runner for this script's measurements (the trainer uses ``grpolab.rollout.multiturn``):
    every turn is one batched ``generate`` over the live episodes with the env's stop strings; a turn that ends
    with a stop string is handed to ``env.step`` and its reply appended; the episode ends at EOS, the per-turn
    limit, ``done`` or ``env.max_turns`` turns."""
    model.eval()
    episodes = [(r, env.reset(r)) for r in rows for _ in range(samples)]
    texts = [""] * len(episodes)
    live = list(range(len(episodes)))
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    kwargs |= dict(eos_token_id=tokenizer.eos_token_id, stop_strings=list(env.stop), tokenizer=tokenizer)
    kwargs |= dict(do_sample=False) if greedy else dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(env.max_turns):
            if not live:
                break
            contexts = [episodes[i][0]["prompt"] + texts[i] for i in live]
            enc = tokenizer(contexts, return_tensors="pt", padding=True)
            out = model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1] :]
            still = []
            for j, i in enumerate(live):
                tokens = out[j].tolist()
                ended = tokenizer.eos_token_id in tokens
                if ended:
                    tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
                turn = tokenizer.decode([t for t in tokens if t != tokenizer.pad_token_id], skip_special_tokens=True)
                texts[i] += turn
                if ended or not any(turn.endswith(s) for s in env.stop):
                    continue
                row, state = episodes[i]
                reply = env.step(state, row, turn)
                texts[i] += reply.text
                if not reply.done:
                    still.append(i)
            live = still
    return texts


def measure(
    model: Any, tokenizer: Any, env: ToolEnv, rows: list[dict[str, Any]], *, samples: int, greedy: bool, seed: int
) -> dict[str, Any]:
    """Accuracy, tool calls per episode and format rate of sampled episodes, overall and per question kind."""
    texts = run_episodes(model, tokenizer, env, rows, samples=samples, greedy=greedy, seed=seed)
    flat = [r for r in rows for _ in range(samples)]
    prompts = [r["prompt"] for r in flat]
    answers = [r["answer"] for r in flat]
    em = search_em(prompts, texts, answer=answers)
    calls = tool_calls(prompts, texts)
    fmt = search_format(prompts, texts)
    out: dict[str, Any] = {
        "accuracy": round(sum(em) / len(em), 4),
        "tool_calls": round(sum(calls) / len(calls), 4),
        "format": round(sum(fmt) / len(fmt), 4),
        "answered": round(sum(extract_answer(t) is not None for t in texts) / len(texts), 4),
    }
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(flat):
        by_kind[r["kind"]].append(i)
    for kind, idx in sorted(by_kind.items()):
        out[kind] = {
            "accuracy": round(sum(em[i] for i in idx) / len(idx), 4),
            "tool_calls": round(sum(calls[i] for i in idx) / len(idx), 4),
            "n": len(idx),
        }
    out["example"] = texts[0]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    deterministic(args.seed)

    if args.write_corpus:
        FACTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        FACTS_PATH.write_text("".join(json.dumps(d) + "\n" for d in generate_facts()), encoding="utf-8")
        print(f"wrote {FACTS_PATH}", flush=True)

    task = search_task(top_k=args.top_k)
    env = task.env
    train, held_out = list(task.train), list(task.eval)
    held_answers = {normalize_answer(r["answer"]) for r in held_out if r["kind"] != "calc"}
    assert not held_answers & {normalize_answer(r["answer"]) for r in train}, "a held-out fact leaked into training"
    real = world_of(train, env)  # wrong answers of real rows come from train values only
    reserved = {n.lower() for f in load_facts() for n in (f["entity"], f["value"])}
    eval_calc = {r["query"] for r in held_out if r["kind"] == "calc"}

    def make_world() -> World:
        return synthetic_world(rng, reserved=reserved, eval_calc=eval_calc, top_k=args.top_k)

    from transformers import LlamaForCausalLM

    tokenizer = char_tokenizer(chars=TEXT_CHARS, model_max_length=MAX_POSITIONS)
    stoi = tokenizer.get_vocab()
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    config = tiny_llama_config(
        tokenizer,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        intermediate=2 * args.hidden,
        max_positions=512,
    )
    model = LlamaForCausalLM(config)
    set_special_token_ids(model, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; train rows {len(train)}, held-out rows {len(held_out)}", flush=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    rng = random.Random(args.seed)
    t0 = time.time()
    running = None
    tokens = 0
    queue: list[tuple[Tensor, Tensor]] = []
    total = args.drill_steps + args.steps
    for step in range(total):
        model.train()
        if step == args.drill_steps:
            queue = []  # phase 2 starts: whole traces
        if not queue and step < args.drill_steps:
            queue = make_drills(
                make_world, rng, stoi, batch_size=args.drill_batch_size, bucket=args.bucket, bos=bos, eos=eos, pad=pad
            )
        elif not queue:
            queue = make_batches(
                real,
                make_world,
                rng,
                stoi,
                synthetic=args.synthetic,
                batch_size=args.batch_size,
                bucket=args.bucket,
                bos=bos,
                eos=eos,
                pad=pad,
                context_weight=args.context_weight,
            )
        ids, weights = queue.pop()  # [B, T], [B, T]
        tokens += int((ids != pad).sum())
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps=total, warmup=args.warmup, lr=args.lr)
        logits = model(input_ids=ids).logits  # [B, T, V]; right padding needs no attention mask (causal)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none")  # [B*(T-1)]
        w = weights[:, 1:].flatten()  # [B*(T-1)]
        loss = (nll * w).sum() / w.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % args.log_every == 0 or step == 0:
            print(f"step {step + 1:5d}  loss {running:.4f}  {time.time() - t0:6.1f}s", flush=True)
        if args.eval_every and (step + 1) % args.eval_every == 0:
            m = measure(model, tokenizer, env, held_out[:64], samples=1, greedy=True, seed=0)
            print(f"           greedy: {json.dumps({k: v for k, v in m.items() if k != 'example'})}", flush=True)
    train_time = time.time() - t0

    model.eval()
    with torch.no_grad():  # logit sharpening: temperature-1 samples of the result = temperature 1/k of the trained
        model.model.norm.weight.mul_(args.sharpen)
    report: dict[str, Any] = {
        "seed": args.seed,
        "drill_steps": args.drill_steps,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "context_weight": args.context_weight,
        "synthetic": args.synthetic,
        "sharpen": args.sharpen,
        "trace_mix": TRACE_MIX,
        "task": {"name": "search", "top_k": args.top_k, "max_turns": env.max_turns, "train_rows": len(train)},
        "parameters": n_params,
        "train_tokens": tokens,
        "final_train_loss": round(running, 4),
        "train_time_s": round(train_time, 1),
        "eval_rows": len(held_out),
        "eval_samples_per_row": args.samples,
        "eval_temp1": measure(model, tokenizer, env, held_out, samples=args.samples, greedy=False, seed=0),
        "eval_greedy": measure(model, tokenizer, env, held_out, samples=1, greedy=True, seed=0),
    }
    save_with_report(model, tokenizer, args.out, report, "warmstart_report.json", start)
    t1 = report["eval_temp1"]
    if not args.no_check and not (0.1 <= t1["accuracy"] <= 0.8 and 0.3 <= t1["tool_calls"] <= 1.8):
        print(f"temperature-1 accuracy {t1['accuracy']} / tool calls {t1['tool_calls']} out of bounds", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
