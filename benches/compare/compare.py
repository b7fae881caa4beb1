"""Side-by-side timing of conclave against pref_voting and crowd-kit on identical inputs.

Usage (from the repository root; see benches/compare/README.md for the venv):

    python benches/compare/compare.py [--out benches/compare/results.json]

1. writes ranked profiles and a Dawid-Skene annotation set into a temporary folder;
2. runs `cargo bench --bench compare -- DIR`, which times conclave's library on them;
3. times pref_voting (Profile construction + method) and crowd-kit (fit_predict) on the
   same data in this process;
4. checks that both give the same answers and prints a Markdown table of median times and
   speed-up ratios (Python time / conclave time).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import pandas as pd
from crowdkit.aggregation import DawidSkene, MajorityVote, OneCoinDawidSkene
from pref_voting.c1_methods import copeland
from pref_voting.iterative_methods import instant_runoff
from pref_voting.margin_based_methods import beat_path, minimax
from pref_voting.profiles import Profile
from pref_voting.scoring_methods import borda, plurality

OPTIONS = ["alpha", "bravo", "charlie", "delta", "echo"]
RULES = {
    "plurality": plurality,
    "borda": borda,
    "copeland": copeland,
    "schulze": beat_path,
    "minimax": minimax,
    "instant-runoff": instant_runoff,
}


def median_time(f, min_runs=5, budget=0.5):
    for _ in range(2):
        f()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget and len(times) < 1000):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ranked_profile(n, seed):
    rng = random.Random(seed)
    rankings = []
    for _ in range(n):
        keyed = sorted(range(len(OPTIONS)), key=lambda k: k * 0.3 + rng.random())
        rankings.append(keyed)
    return rankings


def annotations(tasks, workers, labels, seed):
    rng = random.Random(seed)
    skill = [0.35 + 0.6 * rng.random() for _ in range(workers)]
    rows = []
    for t in range(tasks):
        truth = rng.randrange(labels)
        for w in range(workers):
            label = truth if rng.random() < skill[w] else rng.randrange(labels)
            rows.append((f"t{t}", f"w{w}", f"L{label}"))
    return rows


def measure(root, work, profiles, csv_path):
    print(f"inputs in {work}; timing conclave…", file=sys.stderr)
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "compare", "--", work],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
    ours = [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    results = []
    print("timing pref_voting and crowd-kit…", file=sys.stderr)
    for rec in ours:
        if "method" in rec:
            continue
        _, n, rule = rec["file"][: -len(".json")].split("-", 2)
        n = int(n)
        rankings = profiles[n]
        method = RULES[rule]
        winners = sorted(OPTIONS[c] for c in method(Profile(rankings)))
        t = median_time(lambda: method(Profile(rankings)))
        results.append({
            "case": f"{rule}, {n} ballots", "reference": "pref_voting",
            "reference_s": t, "conclave_s": rec["ns"] / 1e9,
            "same_answer": winners == sorted(rec["winners"]),
        })

    df = pd.read_csv(csv_path, dtype=str)
    models = {
        "dawid-skene": lambda: DawidSkene(n_iter=1000, tol=1e-9),
        "one-coin": lambda: OneCoinDawidSkene(n_iter=1000, tol=1e-9),
        "majority": MajorityVote,
    }
    for rec in ours:
        if "method" not in rec:
            continue
        make = models[rec["method"]]
        labels = make().fit_predict(df)
        t = median_time(lambda: make().fit_predict(df), min_runs=3, budget=2.0)
        agree = sum(labels[k] == v for k, v in rec["labels"].items()) / len(rec["labels"])
        results.append({
            "case": f"{rec['method']}, 10,000 tasks x 20 workers x 4 labels",
            "reference": "crowd-kit", "reference_s": t, "conclave_s": rec["ns"] / 1e9,
            "same_answer": agree >= 0.99, "label_agreement": agree,
            "conclave_iterations": rec["iterations"],
        })

    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="write the measurements as JSON here")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure everything N times; the table shows the median speed-up "
                         "and the lowest one")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    work = tempfile.mkdtemp(prefix="conclave-compare-")

    profiles = {}
    for n in (7, 100, 10_000):
        rankings = ranked_profile(n, seed=n)
        profiles[n] = rankings
        for rule in RULES:
            doc = {
                "rule": rule,
                "input": {
                    "kind": "ranking",
                    "options": OPTIONS,
                    "ballots": [
                        {"agent": f"a{i}", "ranking": [OPTIONS[o] for o in r]}
                        for i, r in enumerate(rankings)
                    ],
                },
            }
            with open(os.path.join(work, f"ranked-{n:05d}-{rule}.json"), "w") as f:
                json.dump(doc, f)
    rows = annotations(10_000, 20, 4, seed=7)
    csv_path = os.path.join(work, "ds-10000x20x4.csv")
    pd.DataFrame(rows, columns=["task", "worker", "label"]).to_csv(csv_path, index=False)

    runs = [measure(root, work, profiles, csv_path) for _ in range(args.repeat)]
    results = []
    for i, first in enumerate(runs[0]):
        speedups = sorted(run[i]["reference_s"] / run[i]["conclave_s"] for run in runs)
        r = dict(first)
        r["reference_s"] = statistics.median(run[i]["reference_s"] for run in runs)
        r["conclave_s"] = statistics.median(run[i]["conclave_s"] for run in runs)
        r["speedup_median"] = statistics.median(speedups)
        r["speedup_min"] = speedups[0]
        r["same_answer"] = all(run[i]["same_answer"] for run in runs)
        results.append(r)

    print(f"{args.repeat} run(s); times are medians over runs, speed-ups the median and the lowest")
    print("| case | reference | reference time | conclave time | speed-up (median, lowest) | same answer |")
    print("|---|---|---:|---:|---:|---|")
    for r in results:
        extra = f" ({r['label_agreement']:.2%} of labels)" if "label_agreement" in r else ""
        print(f"| {r['case']} | {r['reference']} | {fmt(r['reference_s'])} | {fmt(r['conclave_s'])} "
              f"| {r['speedup_median']:.0f}×, {r['speedup_min']:.0f}× | {'yes' if r['same_answer'] else 'NO'}{extra} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if not all(r["same_answer"] for r in results):
        sys.exit(1)


def fmt(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


if __name__ == "__main__":
    main()
