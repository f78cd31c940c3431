"""How much does a small test set decide? Two bases on several fresh sets of the project's own generator.

``make demo`` from ``tiny-randomised`` scored its 12 test images at mAP@50 0.522 against 0.711 from
``tiny``, while ``base_generalisation.py`` (100 images, seed 20261202) put ``tiny-randomised`` ahead on the
same generator (0.714 against 0.683 at 256 px). This scores each model on ``--count`` images of each of
``--seeds`` at the demo's size (384 px; the sample data is seed 7, 48 images, byte for byte), with the
same path as ``base_generalisation.py`` (``score_style``: import, build, ``evaluate_split``, greedy), and
reports each set's mAP@50, per-class AP and the difference between the models, so the demo's seed can be
read against the spread of others. Writes ``benchmarks/results/base_seed_spread.json``.

    nice -n 10 python benchmarks/base_seed_spread.py [--models tiny,tiny-randomised] [--seeds 7,8,9,10,11,12,13]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from base_generalisation import score_style
from machine import machine_info

from inspect_core.data.synthetic_fabric import SAMPLE_DATA_SEED
from inspect_core.model.trained_model import load_trained

RESULTS = Path(__file__).resolve().parent / "results" / "base_seed_spread.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,tiny-randomised", help="two comma-separated models (names or folders)")
    parser.add_argument("--seeds", default="7,8,9,10,11,12,13", help=f"comma-separated seeds ({SAMPLE_DATA_SEED}: the sample data)")
    parser.add_argument("--count", type=int, default=48, help="images per seed (the sample data has 48)")
    parser.add_argument("--size", type=int, default=384, help="image side (the sample data's)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(names) != 2:
        parser.error("--models takes two models: the difference between them is the figure")
    seeds = [int(s) for s in args.seeds.split(",")]
    sets: dict[str, dict] = {str(seed): {} for seed in seeds}
    for name in names:
        model, processor = load_trained(name)
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                scored = score_style(model, processor, "default", args.count, args.size, seed, args.batch_size, Path(tmp))
            sets[str(seed)][name] = {k: scored[k] for k in ("map50", "per_class_ap50", "instances", "called")}
            print(seed, name, scored["map50"], flush=True)
    first, second = names
    for entry in sets.values():
        entry["difference"] = round(entry[second]["map50"] - entry[first]["map50"], 4)
    others = [entry["difference"] for seed, entry in sets.items() if int(seed) != SAMPLE_DATA_SEED]
    summary = {
        "benchmark": "base_seed_spread",
        "machine": machine_info(),
        "models": names,
        "images_per_set": args.count,
        "size": args.size,
        "style": "default",
        "decoding": "greedy, max 128 new tokens (evaluate_split)",
        "difference": f"{second} minus {first}, mAP@50",
        "sets": sets,
        "mean_map50": {name: round(statistics.mean(e[name]["map50"] for e in sets.values()), 4) for name in names},
        "other_seeds_difference": {
            "mean": round(statistics.mean(others), 4) if others else None,
            "stdev": round(statistics.stdev(others), 4) if len(others) > 1 else None,
            "min": min(others, default=None),
            "max": max(others, default=None),
        },
        "command": f"nice -n 10 python benchmarks/base_seed_spread.py --models {args.models} --seeds {args.seeds} "
        f"--count {args.count} --size {args.size}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("mean_map50", "other_seeds_difference")}, indent=2))


if __name__ == "__main__":
    main()
