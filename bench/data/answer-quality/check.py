#!/usr/bin/env python3
"""Validate the answer-quality question sets and print their counts.

Checks every line of expeyes.jsonl, pari.jsonl and offtopic.jsonl:
fields and types, ids unique, styles and splits allowed, minimum sizes and
the share of student-style questions. When the PDFs are installed
(apt-get install expeyes-doc-en pari-doc; pdftotext from poppler-utils), it
also checks that the listed pages exist and that every must_contain term
occurs (case-insensitive, runs of white space counted as one space) in the
pdftotext -layout text of those pages, and warns when a student question
repeats six or more consecutive words of its pages.

Usage: python3 check.py [--pdf-dir DIR ...] [--no-pdf]
Exit status 0 when every check passed, 1 otherwise.
Python 3 standard library only.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))

# file -> (id prefix, minimum number of lines, kind)
FILES = {
    "expeyes.jsonl": ("ex", 60, "doc"),
    "pari.jsonl": ("pa", 40, "doc"),
    "offtopic.jsonl": ("off", 40, "offtopic"),
}
DOCS = {
    "en-eyes.pdf": "expeyes.jsonl",
    "en-eyesj.pdf": "expeyes.jsonl",
    "en-eyesj-progman.pdf": "expeyes.jsonl",
    "tutorial.pdf": "pari.jsonl",
}
DEFAULT_PDF_DIRS = ["/usr/share/expeyes/doc", "/usr/share/pari/doc"]
KEYS = {"id", "question", "doc", "pages", "must_contain", "style", "split"}
COPY_RUN = 6  # consecutive words shared with the page that count as copying


def norm(s):
    return re.sub(r"\s+", " ", s).strip().lower()


def words(s):
    return re.findall(r"[a-z0-9]+", s.lower())


def longest_shared_run(q, page):
    """Length of the longest run of consecutive words of q found in page."""
    qw = words(q)
    page_text = " " + " ".join(words(page)) + " "
    best = 0
    for i in range(len(qw)):
        for j in range(i + best + 1, len(qw) + 1):
            if " " + " ".join(qw[i:j]) + " " in page_text:
                best = j - i
            else:
                break
    return best


class Stats(Counter):
    """Counts per (file, style, split); .pdf counts lines checked or not."""

    def __init__(self):
        super().__init__()
        self.pdf = Counter()


class Pdfs:
    def __init__(self, dirs, enabled):
        self.dirs = dirs
        self.enabled = enabled and shutil.which("pdftotext") is not None
        self.cache = {}

    def pages(self, doc):
        """List of page texts (index 0 = page 1), or None if unavailable."""
        if not self.enabled:
            return None
        if doc in self.cache:
            return self.cache[doc]
        path = next((os.path.join(d, doc) for d in self.dirs
                     if os.path.isfile(os.path.join(d, doc))), None)
        result = None
        if path:
            out = subprocess.run(["pdftotext", "-layout", path, "-"],
                                 capture_output=True, check=True).stdout
            result = out.decode("utf-8", "replace").split("\f")
            if result and not result[-1].strip():
                result.pop()  # pdftotext ends the last page with a form feed
        self.cache[doc] = result
        return result


def check_line(fname, lineno, obj, prefix, kind, pdfs, errors, warnings, stats):
    where = f"{fname}:{lineno}"
    if not isinstance(obj, dict):
        errors.append(f"{where}: not a JSON object")
        return
    if set(obj) != KEYS:
        errors.append(f"{where}: keys {sorted(obj)} != {sorted(KEYS)}")
        return
    qid, q, doc, pages, must, style, split = (obj[k] for k in (
        "id", "question", "doc", "pages", "must_contain", "style", "split"))
    if not (isinstance(qid, str) and re.fullmatch(prefix + r"-\d{3}", qid)):
        errors.append(f"{where}: id {qid!r} is not {prefix}-NNN")
    if not (isinstance(q, str) and q.strip()):
        errors.append(f"{where}: empty question")
    if split not in ("train", "test"):
        errors.append(f"{where}: split {split!r} not train/test")
    if not isinstance(pages, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in pages):
        errors.append(f"{where}: pages must be a list of positive integers")
        return
    if not isinstance(must, list) or not all(isinstance(t, str) and t.strip() for t in must):
        errors.append(f"{where}: must_contain must be a list of non-empty strings")
        return
    stats[(fname, style, split)] += 1

    if kind == "offtopic":
        if doc is not None or pages or must or style != "offtopic":
            errors.append(f"{where}: off-topic lines need doc null, pages [], "
                          f"must_contain [], style offtopic")
        return

    if style not in ("student", "keyword"):
        errors.append(f"{where}: style {style!r} not student/keyword")
    if DOCS.get(doc) != fname:
        errors.append(f"{where}: doc {doc!r} does not belong in {fname}")
        return
    if not pages:
        errors.append(f"{where}: no pages")
    if not 1 <= len(must) <= 3:
        errors.append(f"{where}: must_contain needs 1 to 3 terms")
    if len(pages) != len(set(pages)):
        errors.append(f"{where}: repeated page")

    texts = pdfs.pages(doc)
    if texts is None:
        stats.pdf["unverified"] += 1
        return
    bad = [p for p in pages if p > len(texts)]
    if bad:
        errors.append(f"{where}: pages {bad} beyond the {len(texts)} pages of {doc}")
        return
    text = "\n".join(texts[p - 1] for p in pages)
    ntext = norm(text)
    for term in must:
        if norm(term) not in ntext:
            errors.append(f"{where}: {qid}: {term!r} not on {doc} pages {pages}")
    if style == "student":
        run = longest_shared_run(q, text)
        if run >= COPY_RUN:
            warnings.append(f"{where}: {qid}: student question shares {run} "
                            f"consecutive words with its page")
    stats.pdf["verified"] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pdf-dir", action="append", default=[],
                    help="directory holding the PDFs (repeatable); "
                         "defaults: " + ", ".join(DEFAULT_PDF_DIRS))
    ap.add_argument("--no-pdf", action="store_true",
                    help="skip the checks against the PDF text")
    args = ap.parse_args()
    pdfs = Pdfs(args.pdf_dir + DEFAULT_PDF_DIRS, not args.no_pdf)

    errors, warnings = [], []
    stats = Stats()
    ids = Counter()
    lines_per_file = Counter()
    for fname, (prefix, minimum, kind) in FILES.items():
        path = os.path.join(HERE, fname)
        if not os.path.isfile(path):
            errors.append(f"{fname}: missing")
            continue
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    errors.append(f"{fname}:{lineno}: blank line")
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    errors.append(f"{fname}:{lineno}: bad JSON: {e}")
                    continue
                lines_per_file[fname] += 1
                if isinstance(obj, dict):
                    ids[obj.get("id")] += 1
                check_line(fname, lineno, obj, prefix, kind, pdfs, errors, warnings, stats)
        if lines_per_file[fname] < minimum:
            errors.append(f"{fname}: {lines_per_file[fname]} lines, at least {minimum} wanted")
        if kind == "doc":
            student = sum(v for (fn, st, _), v in stats.items()
                          if fn == fname and st == "student")
            if 3 * student < 2 * lines_per_file[fname]:
                errors.append(f"{fname}: {student} of {lines_per_file[fname]} "
                              f"student-style, at least two thirds wanted")
    for qid, n in ids.items():
        if n > 1:
            errors.append(f"id {qid!r} used {n} times")

    print(f"{'file':<16} {'style':<9} {'train':>5} {'test':>5} {'total':>5}")
    for fname in FILES:
        styles = sorted({st for (fn, st, _) in stats if fn == fname})
        for st in styles:
            tr, te = stats[(fname, st, "train")], stats[(fname, st, "test")]
            print(f"{fname:<16} {st:<9} {tr:>5} {te:>5} {tr + te:>5}")
        tr = sum(v for (fn, _, sp), v in stats.items() if fn == fname and sp == "train")
        te = sum(v for (fn, _, sp), v in stats.items() if fn == fname and sp == "test")
        print(f"{fname:<16} {'all':<9} {tr:>5} {te:>5} {tr + te:>5}")
    print(f"lines checked against the PDF text: {stats.pdf['verified']}; "
          f"not checked (PDF or pdftotext missing): {stats.pdf['unverified']}")
    for w in warnings:
        print("warning:", w)
    for e in errors:
        print("error:", e)
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
