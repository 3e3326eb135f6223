#!/usr/bin/env python3
"""Assign each question of the answer-quality sets to train or test, once.

For each file, questions are grouped by style (stratified); within a style
the ids are sorted, shuffled with random.Random(SEED), and the first
n // 2 go to "test", the rest to "train". The file is rewritten in its
original line order with the "split" field filled in.

The split is meant to be made once, when the questions are written, and
never redrawn: the script refuses to touch a file whose lines already have
a split unless --force is given. Adding questions later: give them a split
by hand (or by a new, recorded rule), do not re-run this on the old ones.

Usage: python3 split.py [--force]
Python 3 standard library only.
"""

import json
import os
import random
import sys
from collections import defaultdict

SEED = 20261203
FILES = ["expeyes.jsonl", "pari.jsonl", "offtopic.jsonl"]
HERE = os.path.dirname(os.path.abspath(__file__))


def split_file(path, force):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not force and any(r.get("split") is not None for r in rows):
        print(f"{os.path.basename(path)}: already split, left alone (use --force to redo)")
        return
    rng = random.Random(SEED)
    by_style = defaultdict(list)
    for r in rows:
        by_style[r["style"]].append(r["id"])
    split = {}
    for style in sorted(by_style):
        ids = sorted(by_style[style])
        rng.shuffle(ids)
        half = len(ids) // 2
        for i, qid in enumerate(ids):
            split[qid] = "test" if i < half else "train"
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            r["split"] = split[r["id"]]
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = defaultdict(int)
    for r in rows:
        counts[(r["style"], r["split"])] += 1
    print(os.path.basename(path) + ": " + ", ".join(
        f"{s} {counts[(s, 'train')]} train / {counts[(s, 'test')]} test" for s in sorted(by_style)))


def main():
    force = "--force" in sys.argv[1:]
    for name in FILES:
        split_file(os.path.join(HERE, name), force)


if __name__ == "__main__":
    main()
