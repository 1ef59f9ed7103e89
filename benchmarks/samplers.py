"""Prompt samplers side by side under one generation budget: GRPO with each sampler vs ``uniform``.

Run BY HAND (each run is its own single-thread process; ``--jobs`` runs that many at once)::

    cd <repository root>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/samplers.py                          # every sampler, 2 seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/samplers.py --samplers dynamic,vade --seeds 0 --budget 20000

Every run is ``grpolab train --algo grpo --sampler <name>`` (the sampler's own defaults, GRPO's parts and the
default settings otherwise: 16 prompts x 8 completions, 8 new tokens, lr 2e-4) on the built-in tiny-arith model
and arith task, stopped by ``--max-generated-tokens`` once it has sampled ``--budget`` completion tokens, or after
``--steps`` steps (default 100: the budget's default is spent by ``uniform`` in about 92; samplers with a schedule
over the run, such as ``hard_mining``'s stage split, read ``--steps`` as the run's length). Every
sampled token counts: dropped groups (dynamic sampling), estimation rounds that score prompts without training
on them (VAS, CurES, variance selection). The budget is what each sampler spends its way, so a sampler that
generates more per step takes fewer steps. Reported per sampler, mean over seeds:

- ``acc``: held-out pass@1 at temperature 1 after the budget (same problems and evaluation seed for every run);
  ``vs uniform``: its difference to ``uniform``'s in the same invocation;
- ``zero-var``: fraction of the trained groups whose completions all got the same reward (no GRPO signal),
  mean over the steps;
- ``rounds``: generation rounds per step (mean), ``steps``: training steps the budget paid for;
- ``step s``: median seconds per step, and its ratio to ``uniform``'s.

Results are appended to ``--out`` (JSON lines, one per finished run) as they finish; a re-run with the same
``--out`` and budget skips finished runs.
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


def run_one(sampler: str, seed: int, budget: int, steps: int, eval_prompts: int, workdir: str) -> dict:
    """One budgeted training run in a fresh process; returns its summary (raises with stderr on failure)."""
    args = ["--algo", "grpo", "--sampler", sampler, "--seed", str(seed), "--steps", str(steps)]
    args += ["--max-generated-tokens", str(budget), "--eval-prompts", str(eval_prompts)]
    records, wall = train_records(f"{sampler}-s{seed}", args, workdir)
    train = [r for r in records if r["step"] > 0]

    def mean(key: str, default: float | None = None) -> float | None:
        values = [r[key] for r in train if r.get(key) is not None]
        return statistics.fmean(values) if values else default

    return {
        "sampler": sampler,
        "seed": seed,
        "budget": budget,
        "max_steps": steps,
        "base_acc": records[0]["eval/pass@1"],
        "acc": records[-1]["eval/pass@1"],
        "steps": len(train),
        "generated_tokens": records[-1]["generated_tokens"],
        "zero_var": mean("zero_variance_frac"),
        "rounds": mean("sampler/rounds", 1.0),
        "step_s": statistics.median(r["step_time"] for r in train),
        "wall_s": wall,
    }


def table(results: list[dict]) -> str:
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["sampler"], []).append(r)

    def avg(rs: list[dict], key: str) -> float | None:
        values = [r[key] for r in rs if r[key] is not None]
        return statistics.fmean(values) if values else None

    ref_acc = avg(by["uniform"], "acc") if "uniform" in by else None
    ref_time = avg(by["uniform"], "step_s") if "uniform" in by else None

    def fmt(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    lines = [
        "| sampler | seeds | base acc | acc | vs uniform | zero-var | rounds | steps | step s | time vs uniform |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sampler in sorted(by, key=lambda s: (s != "uniform", s)):
        rs = by[sampler]
        acc, step_s = avg(rs, "acc"), avg(rs, "step_s")
        delta = None if ref_acc is None or acc is None else acc - ref_acc
        ratio = None if ref_time is None or step_s is None else step_s / ref_time
        lines.append(
            f"| {sampler} | {len(rs)} | {fmt(avg(rs, 'base_acc'), '.3f')} | {fmt(acc, '.3f')} | {fmt(delta, '+.3f')} | "
            f"{fmt(avg(rs, 'zero_var'), '.3f')} | {fmt(avg(rs, 'rounds'), '.2f')} | {fmt(avg(rs, 'steps'), '.0f')} | "
            f"{fmt(step_s, '.3f')} | {fmt(ratio, '.2f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from grpolab.data.sampler import SAMPLERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samplers", default="all", help="comma-separated sampler names (default: every sampler)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument(
        "--budget", type=int, default=40000, help="completion tokens per run (default 40000: ~100 uniform steps)"
    )
    parser.add_argument("--steps", type=int, default=100, help="step limit of a run (default 100)")
    parser.add_argument("--eval-prompts", type=int, default=300, help="held-out problems (default 300)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (default 1)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "samplers.jsonl"))
    args = parser.parse_args()

    names = [s for s in sorted(SAMPLERS) if not s.startswith("_")] if args.samplers == "all" else []
    names = names or args.samplers.split(",")
    for s in names:
        SAMPLERS[s]  # unknown names fail here, listing the known ones
    if "uniform" not in names:
        names.insert(0, "uniform")  # the reference
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    done = load_results(out)
    key = (args.budget, args.steps)
    have = {(r["sampler"], r["seed"], r["budget"], r["max_steps"]) for r in done}
    todo = [(n, s) for s in seeds for n in names if (n, s, *key) not in have]

    def run(name: str, seed: int, work: str) -> dict:
        return run_one(name, seed, args.budget, args.steps, args.eval_prompts, work)

    new, failures = run_all(todo, run, out, args.jobs, lambda r: f"acc {r['acc']:.3f} after {r['steps']} steps")
    done += new
    results = [r for r in done if (r["budget"], r["max_steps"]) == key and r["sampler"] in names and r["seed"] in seeds]
    print(
        f"\nbudget {args.budget} tokens or {args.steps} steps, seeds {seeds}, {args.eval_prompts} held-out problems, "
        "tiny-arith / arith\n"
    )
    print(table(results))
    finish(failures)


if __name__ == "__main__":
    main()
