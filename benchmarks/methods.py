"""Every preset on the built-in task, side by side: accuracy, entropy, response length, step time vs ``grpo``.

Run BY HAND (each run is its own single-thread process; ``--jobs`` runs that many at once)::

    cd <repository root>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/methods.py                        # all presets, 2 seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/methods.py --presets grpo,bnpo --seeds 0 --steps 50

Each run is ``grpolab train`` on the built-in tiny-arith model and arith task with the preset's own settings
and the defaults otherwise (16 prompts x 8 completions unless the preset sets G, 8 new tokens, lr 2e-4),
``--steps`` steps, then the held-out pass@1 at temperature 1 on ``--eval-prompts`` problems (the same problems
and evaluation seed for every preset). Reported per preset, mean over seeds:

- ``acc``: held-out pass@1 after training (``base`` is the untrained model's, the same for every preset);
- ``entropy``: mean token entropy of the policy on its own samples over the last 10 % of the steps;
- ``length``: mean completion length (tokens) over the last 10 % of the steps;
- ``step s`` and ``vs grpo``: median seconds per training step (generation + scoring + update, evaluation
  excluded) and its ratio to ``grpo``'s in the same invocation. Runs are interleaved preset by preset per
  seed so machine noise hits all presets alike; compare ratios only within one table.

Results are appended to ``--out`` (JSON lines, one per finished run) as they finish, so an interrupted
benchmark keeps what it measured and a re-run with the same ``--out`` skips finished runs.
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


def run_one(preset: str, seed: int, steps: int, eval_prompts: int, workdir: str) -> dict:
    """One training run in a fresh process; returns its summary (raises with the run's stderr on failure)."""
    args = ["--algo", preset, "--seed", str(seed), "--steps", str(steps), "--eval-prompts", str(eval_prompts)]
    records, wall = train_records(f"{preset}-s{seed}", args, workdir)
    train = [r for r in records if r["step"] > 0]
    tail = train[-max(1, len(train) // 10) :]

    def mean(key: str) -> float | None:
        values = [r[key] for r in tail if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    return {
        "preset": preset,
        "seed": seed,
        "steps": steps,
        "base_acc": records[0]["eval/pass@1"],
        "acc": records[-1]["eval/pass@1"],
        "entropy": mean("entropy"),
        "length": mean("response_length"),
        "step_s": statistics.median(r["step_time"] for r in train),
        "skipped_frac": sum(1 for r in train if r.get("skipped")) / len(train),
        "wall_s": wall,
    }


def table(results: list[dict]) -> str:
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["preset"], []).append(r)
    ref = statistics.fmean(r["step_s"] for r in by["grpo"]) if "grpo" in by else None

    def fmt(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    lines = [
        "| preset | seeds | base acc | acc | entropy | length | step s | vs grpo | skipped steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for preset in sorted(by, key=lambda p: (p != "grpo", p)):
        rs = by[preset]
        m = {
            k: statistics.fmean(r[k] for r in rs if r[k] is not None) if any(r[k] is not None for r in rs) else None
            for k in ("base_acc", "acc", "entropy", "length", "step_s", "skipped_frac")
        }
        ratio = None if ref is None else m["step_s"] / ref
        lines.append(
            f"| {preset} | {len(rs)} | {fmt(m['base_acc'], '.3f')} | {fmt(m['acc'], '.3f')} | "
            f"{fmt(m['entropy'], '.3f')} | {fmt(m['length'], '.2f')} | {fmt(m['step_s'], '.3f')} | "
            f"{fmt(ratio, '.2f')} | {fmt(m['skipped_frac'], '.2f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from grpolab.algorithms import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="all", help="comma-separated preset names (default: every preset)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per run (default 100)")
    parser.add_argument("--eval-prompts", type=int, default=300, help="held-out problems (default 300)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (default 1)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "methods.jsonl"))
    args = parser.parse_args()

    presets = sorted(PRESETS) if args.presets == "all" else args.presets.split(",")
    for p in presets:
        PRESETS[p]  # unknown names fail here, listing the known ones
    if "grpo" not in presets:
        presets.insert(0, "grpo")  # the reference of the step-time ratio
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    done = load_results(out)
    have = {(r["preset"], r["seed"], r["steps"]) for r in done}
    todo = [(p, s) for s in seeds for p in presets if (p, s, args.steps) not in have]

    def run(name: str, seed: int, work: str) -> dict:
        return run_one(name, seed, args.steps, args.eval_prompts, work)

    new, failures = run_all(todo, run, out, args.jobs, lambda r: f"acc {r['acc']:.3f}, {r['step_s']:.3f} s/step")
    done += new
    results = [r for r in done if r["steps"] == args.steps and r["preset"] in presets and r["seed"] in seeds]
    print(f"\n{args.steps} steps, seeds {seeds}, {args.eval_prompts} held-out problems, tiny-arith / arith\n")
    print(table(results))
    finish(failures)


if __name__ == "__main__":
    main()
