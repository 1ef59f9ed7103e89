"""OTC-GRPO vs GRPO on the ``search`` task from the built-in ``tiny-tools`` model: tool calls, accuracy, efficiency.

Run BY HAND (each run is its own single-thread process; ``--jobs`` runs that many at once)::

    cd <repository root>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/otc.py                       # grpo and otc_grpo, seeds 0 and 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/otc.py --steps 20 --seeds 0 --presets grpo,otc_grpo,otc_ppo

Each run is ``grpolab train --task search --model tiny-tools`` with the preset's own settings, the same
``--steps``, seeds, prompts per step, learning rate and evaluation for every preset; the held-out rows are evaluated
at step 0 (the untrained model: "before") and at the end ("after"), ``--eval-samples`` episodes per row at
temperature 1. Reported per preset, mean over seeds:

- ``calls``: tool calls per answer: the mean number of tool calls of a held-out episode (``eval/tool_calls``; each
  episode ends with one answer or none);
- ``acc``: held-out accuracy (``eval/pass@1``, exact match of the answer);
- ``TP``: tool productivity, correct answers per tool call (OTC's metric: acc / calls);
- ``calls vs grpo``: the preset's calls after training divided by ``grpo``'s (same table, same seeds);
- ``lookup / given / calc calls``: held-out calls per episode of each question kind, before → after (given
  questions never need a call; lookups need one search; calc questions one calculator call).

Results are appended to ``--out`` (JSON lines, one per finished run) as they finish; a re-run with the same
``--out`` skips finished runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from runs import ROOT, finish, load_results, run_all, train_records

#: Held-out tool calls per episode: the rollout's count (``eval/tool_calls``), else the transcript's.
CALLS = ("eval/tool_calls", "eval/reward/tool_calls")


#: Question kinds of the search task, each with its held-out calls per episode (``eval/reward/calls_<kind>``).
KINDS = ("lookup", "given", "calc")


def calls_of(record: dict) -> float:
    return next(record[k] for k in CALLS if record.get(k) is not None)


def run_one(preset: str, seed: int, args: argparse.Namespace, workdir: str) -> dict:
    """One training run in a fresh process; returns its summary (raises with the run's stderr on failure)."""
    cli = ["--algo", preset, "--task", "search", "--model", "tiny-tools", "--seed", str(seed)]
    cli += ["--steps", str(args.steps), "--num-prompts", str(args.num_prompts)]
    cli += ["--num-generations", str(args.num_generations), "--learning-rate", str(args.learning_rate)]
    cli += ["--eval-prompts", str(args.eval_prompts), "--eval-samples", str(args.eval_samples)]
    records, wall = train_records(f"{preset}-s{seed}", cli, workdir)
    first, last = records[0], records[-1]
    both = (("before", first), ("after", last))
    train = [r for r in records if r["step"] > 0]
    return {
        "preset": preset,
        "seed": seed,
        "steps": args.steps,
        "num_prompts": args.num_prompts,
        "num_generations": args.num_generations,
        "learning_rate": args.learning_rate,
        "eval_prompts": args.eval_prompts,
        "eval_samples": args.eval_samples,
        "calls_before": calls_of(first),
        "calls_after": calls_of(last),
        **{f"{kind}_calls_{when}": r.get(f"eval/reward/calls_{kind}") for kind in KINDS for when, r in both},
        "acc_before": first["eval/pass@1"],
        "acc_after": last["eval/pass@1"],
        "train_calls_last10": statistics.fmean(r["reward/tool_calls"] for r in train[-max(1, len(train) // 10) :]),
        "step_s": statistics.median(r["step_time"] for r in train),
        "wall_s": wall,
    }


def tp(acc: float, calls: float) -> float | None:
    """Tool productivity: correct answers per tool call (None without calls)."""
    return acc / calls if calls > 0 else None


def table(results: list[dict]) -> str:
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["preset"], []).append(r)

    def mean(rs: list[dict], key: str) -> float:
        return statistics.fmean(r[key] for r in rs)

    ref = mean(by["grpo"], "calls_after") if "grpo" in by else None

    def fmt(x: float | None, spec: str = ".3f") -> str:
        return "-" if x is None else format(x, spec)

    lines = [
        "| preset | seeds | calls before | calls after | acc before | acc after | TP before | TP after | "
        "calls vs grpo | lookup calls | given calls | calc calls | step s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for preset in sorted(by, key=lambda p: (p != "grpo", p)):
        rs = by[preset]
        cb, ca, ab, aa = (mean(rs, k) for k in ("calls_before", "calls_after", "acc_before", "acc_after"))
        ratio = ca / ref if ref else None
        kinds = " | ".join(f"{mean(rs, f'{k}_calls_before'):.2f} → {mean(rs, f'{k}_calls_after'):.2f}" for k in KINDS)
        lines.append(
            f"| {preset} | {len(rs)} | {cb:.3f} | {ca:.3f} | {ab:.3f} | {aa:.3f} | {fmt(tp(ab, cb))} | "
            f"{fmt(tp(aa, ca))} | {fmt(ratio, '.2f')} | {kinds} | {mean(rs, 'step_s'):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="grpo,otc_grpo", help="comma-separated presets (default grpo,otc_grpo)")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    p.add_argument("--steps", type=int, default=30, help="training steps per run (default 30)")
    p.add_argument("--num-prompts", type=int, default=8, help="prompts per step (default 8)")
    p.add_argument("--num-generations", type=int, default=8, help="episodes per prompt (default 8)")
    p.add_argument("--learning-rate", type=float, default=2e-4, help="learning rate (default 2e-4)")
    p.add_argument("--eval-prompts", type=int, default=128, help="held-out rows evaluated (default 128: all)")
    p.add_argument("--eval-samples", type=int, default=2, help="episodes per held-out row (default 2)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "otc.jsonl")
    args = p.parse_args(argv)
    presets, seeds = args.presets.split(","), [int(s) for s in args.seeds.split(",")]
    same = ("steps", "num_prompts", "num_generations", "learning_rate", "eval_prompts", "eval_samples")
    previous = [r for r in load_results(args.out) if all(r.get(k) == getattr(args, k) for k in same)]
    done = {(r["preset"], r["seed"]) for r in previous}
    todo = [(preset, seed) for seed in seeds for preset in presets if (preset, seed) not in done]

    def describe(r: dict) -> str:
        return (
            f"calls {r['calls_before']:.2f} -> {r['calls_after']:.2f}, acc {r['acc_before']:.3f} -> "
            f"{r['acc_after']:.3f}, {r['wall_s']:.0f} s"
        )

    new, failures = run_all(
        todo, lambda name, seed, work: run_one(name, seed, args, work), args.out, args.jobs, describe
    )
    wanted = [r for r in previous + new if r["preset"] in presets and r["seed"] in seeds]
    if wanted:
        print(table(wanted))
    finish(failures)


if __name__ == "__main__":
    main()
