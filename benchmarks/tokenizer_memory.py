"""What a 250k-piece Unigram tokenizer costs to hold, in ``tokenizers`` and compacted (issue 17).

XLM-R's ``tokenizer.json`` (250,002 Unigram pieces) cannot be downloaded here, so this builds
synthetic ones of the same size and layout (specials 0-3, ``<mask>`` last, NFKC, Metaspace,
``<s> ... </s>``) at the two ends of how much the pieces share prefixes, which is what
``tokenizers``' byte trie pays for:

* ``shared``: every piece grows one character from an earlier one (many shared prefixes);
* ``random``: random strings of 1-8 characters over Latin, Cyrillic, Greek and 3,000 CJK
  characters, half with the ``▁`` word mark (few shared prefixes, many 3-byte characters).

Each file is loaded by ``clamp3.tokenizer.TextTokenizer.from_file`` in a fresh process, once
with ``compact=False`` (all in ``tokenizers``) and once compacted (the default rule for this
size), side by side in one run: load seconds, resident set after loading and its high-water
mark above the interpreter with ``tokenizers`` imported, p50 of one ~15-token query, and the ids
of the same fuzzed texts, which must be identical between the two.

``--search BENCH`` then runs the cold ``clamp3 search`` of ``benchmarks/onnx_runtime.py`` (a
fresh process to the first result row, its peak RSS; BENCH is that script's ``--work`` folder,
already built) with the fp32 and int8 exports as they are and with the same graphs beside each
250k-piece tokenizer, once as a bare ``tokenizer.json`` (parsed at load) and once as
``TextTokenizer.save`` writes it (with ``tokenizer.compact.npz``, as ``export-onnx`` and
``save_pretrained`` leave it), so the tokenizer's share of a torch-free search is measured end
to end.

    .venv/bin/python benchmarks/tokenizer_memory.py --work /tmp/tokenizer-memory
    .venv/bin/python benchmarks/tokenizer_memory.py --work /tmp/tokenizer-memory --search /tmp/onnx-bench
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

PIECES = 250_002
QUERY = "a melancholy waltz for solo piano, slow and quiet"
LATIN = "abcdefghijklmnopqrstuvwxyzäöüéèàçñß"
CODES = [*range(0x430, 0x450), *range(0x3B1, 0x3C9), *range(0x4E00, 0x4E00 + 3000)]  # Cyrillic, Greek, CJK
OTHER = [chr(c) for c in CODES]


def make_pieces(kind: str, rng: random.Random) -> list[str]:
    alphabet = list(LATIN) + OTHER
    pieces: dict[str, None] = {}
    grown: list[str] = []
    target = PIECES - 5  # four specials first, <mask> last
    while len(pieces) < target:
        if kind == "random":
            piece = ("▁" if rng.random() < 0.5 else "") + "".join(rng.choices(alphabet, k=rng.randint(1, 8)))
        else:
            stem = rng.choice(grown) if grown and rng.random() < 0.9 else rng.choice(["", "▁"])
            piece = stem + rng.choice(alphabet[:60] if rng.random() < 0.9 else alphabet)
            if len(piece) > 12:
                continue
        if piece not in pieces:
            pieces[piece] = None
            grown.append(piece)
    return list(pieces)


def write_tokenizer(path: Path, kind: str) -> None:
    rng = random.Random(0)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = [[s, 0.0] for s in specials] + [[p, -rng.uniform(3.0, 16.0)] for p in make_pieces(kind, rng)]
    vocab.append(["<mask>", 0.0])
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": t == "<mask>", "rstrip": False,
         "normalized": False, "special": True}
        for i, t in list(enumerate(specials)) + [(len(vocab) - 1, "<mask>")]
    ]
    meta = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    data = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFKC"}, "pre_tokenizer": meta,
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                           "trim_offsets": True, "add_prefix_space": True},
        "decoder": meta,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": False},
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def fuzz_texts(path: Path, n: int) -> list[str]:
    rng = random.Random(1)
    vocab = json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]
    words = [p.replace("▁", " ") for p, _ in rng.sample(vocab, 5000)]
    extra = list(LATIN) + OTHER[:100] + [" ", "  ", "<mask>", "😀", "ｽﾅｯﾌﾟ", "ﬁ"]
    texts = ["".join(rng.choice(words if rng.random() < 0.6 else extra) for _ in range(12)) for _ in range(n)]
    return [QUERY, *texts]


CHILD = r"""
import json, sys, time, statistics
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
import tokenizers
from clamp3.tokenizer import TextTokenizer
base = rss("VmRSS")
path, compact, texts = sys.argv[1], sys.argv[2] == "compact", json.loads(open(sys.argv[3]).read())
start = time.perf_counter()
tok = TextTokenizer.from_file(path, compact=None if compact else False)
load = time.perf_counter() - start
after, peak = rss("VmRSS"), rss("VmHWM")
assert (tok.compact is not None) == compact
times = []
for _ in range(200):
    t = time.perf_counter(); tok.encode(texts[0]); times.append(time.perf_counter() - t)
ids = [tok.encode(t) for t in texts]
print(json.dumps({"load_s": load, "rss_mb": after - base, "peak_mb": peak - base,
                  "query_ms": 1000 * statistics.median(times), "tokens": len(ids[0]), "ids": ids}))
"""


def measure(path: Path, loader: str, texts_file: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), loader, str(texts_file)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{path.name} ({loader}): {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def search_with(bench: Path, work: Path, runs: int) -> None:
    """Cold fp32 and int8 searches of the ``onnx_runtime.py`` folder ``bench``, with its own
    tokenizer and with each 250k-piece one (the export's files linked, only ``tokenizer.json``
    replaced)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from onnx_runtime import cold_start  # the same measurement as the ONNX benchmark's

    from clamp3.tokenizer import TextTokenizer

    idx = bench / "idx"
    query = "a slow melancholy waltz for solo piano with a gentle dotted theme in minor"
    variants = {}
    for precision in ("fp32", "int8"):
        export = bench / f"onnx-{precision}"
        variants[f"{precision}, its own (2,000 pieces)"] = export
        for kind in ("shared", "random"):
            for form in ("json", "saved"):  # tokenizer.json alone / as saved, with its compact form
                linked = work / f"onnx-{precision}-{kind}-{form}"
                shutil.rmtree(linked, ignore_errors=True)
                linked.mkdir()
                for item in export.iterdir():
                    if not item.name.startswith("tokenizer."):
                        (linked / item.name).symlink_to(item.resolve())
                if form == "json":
                    (linked / "tokenizer.json").write_bytes((work / f"{kind}.json").read_bytes())
                else:
                    TextTokenizer.from_file(work / f"{kind}.json").save(linked)
                variants[f"{precision}, 250k {kind}, {form}"] = linked
    print(f"\ncold `clamp3 search` of an ONNX export, median of {runs} (interleaved):")
    results: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(runs):
        for name, directory in variants.items():
            results.setdefault(name, []).append(cold_start(directory, idx, query))
    print(f"{'export, tokenizer':36}{'first result s':>15}{'CPU s':>8}{'peak RSS MB':>13}")
    for name, rows in results.items():
        first, _, cpu = (sorted(r[i] for r in rows)[len(rows) // 2] for i in range(3))
        print(f"{name:36}{first:>15.2f}{cpu:>8.2f}{max(r[1] for r in rows):>13.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/tokenizer-memory")
    parser.add_argument("--texts", type=int, default=2000, help="fuzzed texts whose ids are compared")
    parser.add_argument("--search", type=Path, default=None, help="a built onnx_runtime.py --work folder")
    parser.add_argument("--runs", type=int, default=3, help="cold searches per tokenizer (--search)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'pieces':8}{'loader':12}{'file MB':>9}{'load s':>8}{'RSS MB':>8}{'peak MB':>9}{'query ms':>10}")
    for kind in ("shared", "random"):
        path = work / f"{kind}.json"
        if not path.is_file():
            write_tokenizer(path, kind)
        texts_file = work / f"{kind}-texts.json"
        texts_file.write_text(json.dumps(fuzz_texts(path, args.texts)), encoding="utf-8")
        rows = {loader: measure(path, loader, texts_file) for loader in ("tokenizers", "compact")}
        for loader, r in rows.items():
            print(
                f"{kind:8}{loader:12}{path.stat().st_size / 2**20:>9.1f}{r['load_s']:>8.2f}"
                f"{r['rss_mb']:>8.0f}"
                f"{r['peak_mb']:>9.0f}{r['query_ms']:>10.3f}"
            )
        same = rows["tokenizers"]["ids"] == rows["compact"]["ids"]
        t, c = rows["tokenizers"], rows["compact"]
        print(
            f"{kind}: ids identical on {len(t['ids'])} texts: {same}; compact/tokenizers: peak "
            f"{c['peak_mb'] / t['peak_mb']:.2f}x, query {c['query_ms'] / t['query_ms']:.2f}x "
            f"({t['tokens']} tokens)"
        )
        if not same:
            raise SystemExit("the compact segmentation gave other ids")
    if args.search is not None:
        search_with(args.search, work, args.runs)


if __name__ == "__main__":
    main()
