"""Train a seeded ensemble of tiny reward models on the ``arith`` task (and optionally a two-head one) and save them.

Each model is a character-level ``LlamaForSequenceClassification`` (``grpolab.rewards.reward_model.train_reward_model``:
hidden 32, 2 layers, ~30k parameters) trained by MSE regression on labelled completions of the arith TRAIN split
(``arith_reward_examples``: half right answers, half wrong numbers, some with trailing characters). As in Coste et
al. (arXiv 2310.02743), the members see the SAME data and differ only in their seed (initialisation and batch order).

- ``rm_<i>`` (i = 0..M−1): one head, ``correct`` (1 for the exact answer, else 0), for the ``ensemble_wco`` /
  ``ensemble_uwo`` presets;
- ``rm_multi`` (``--multi-head``): two heads, ``correct`` and ``brevity`` (1 − length / 8), HydroX-style multi-label
  regression (arXiv 2503.21819), for the ``mo_grpo`` preset.

What they learn in seconds (printed and written to ``report.json``): on held-out EVAL problems, how often the score
(threshold 0.5) tells the right answer from a random number of the results' range (well above chance: the answer's
size and format given the operands) and from a near miss (±1, ±10, one digit: close to chance). Imperfect proxies of
the exact verifier on purpose: the setting in which ensembles are meant to help.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_reward_models.py --out rms --num-models 5 --multi-head
    grpolab train --algo ensemble_wco --task arith \\
        --task-args "{reward: [exact, {reward_model: {path: rms/rm_0}}, {reward_model: {path: rms/rm_1}}]}"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from grpolab.rewards.reward_model import (
    ARITH_LABELS,
    RewardModel,
    accuracy,
    arith_reward_examples,
    train_reward_model,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder that receives rm_0 .. rm_<M-1> (and rm_multi)")
    p.add_argument("--num-models", type=int, default=5, help="ensemble size M (Coste et al.: 5; default 5)")
    p.add_argument("--multi-head", action="store_true", help="also train rm_multi with heads correct and brevity")
    p.add_argument("--examples", type=int, default=4000, help="labelled training completions (default 4000)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per model (default 300)")
    p.add_argument("--seed", type=int, default=0, help="data seed; model i uses seed + i (default 0)")
    p.add_argument("--eval", type=int, default=400, help="held-out eval examples per measurement (default 400)")
    return p.parse_args(argv)


def measure(path: Path, n: int) -> dict[str, float]:
    """Held-out accuracy of the ``correct`` head: right answer vs a random number, and vs a near miss."""
    fn = RewardModel(path, head="correct")
    out = {}
    for label, near in (("vs_random_number", 0.0), ("vs_near_miss", 1.0)):
        texts, y = arith_reward_examples(n, seed=12345, split="eval", near_miss=near, tail=0.0, labels=("correct",))
        prompts = [t[: t.index("=") + 1] for t in texts]
        completions = [t[t.index("=") + 1 :] for t in texts]
        out[f"accuracy_{label}"] = accuracy(fn(prompts, completions), [row[0] for row in y])
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.num_models < 1:
        print("--num-models must be >= 1", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    jobs = [(f"rm_{i}", ("correct",), args.seed + i) for i in range(args.num_models)]
    if args.multi_head:
        jobs.append(("rm_multi", ARITH_LABELS, args.seed + args.num_models))
    for name, labels, seed in jobs:
        start = time.time()
        texts, y = arith_reward_examples(args.examples, seed=args.seed, labels=labels)  # the same data for every seed
        trained = train_reward_model(
            texts, y, label_names=labels, steps=args.steps, seed=seed, output_dir=args.out / name
        )
        k = max(1, args.steps // 10)
        entry = {
            "labels": list(labels),
            "seed": seed,
            "loss_first_tenth": sum(trained.losses[:k]) / k,
            "loss_last_tenth": sum(trained.losses[-k:]) / k,
            "train_seconds": round(time.time() - start, 1),
            **measure(args.out / name, args.eval),
        }
        report[name] = entry
        print(name, json.dumps(entry), flush=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
