"""Mutation check: put each known bug into a scratch copy of the repo and make sure the tests fail.

Each mutant below is a bug that once survived the whole suite (issue 12). For
each, this script copies the working tree (tracked files, as they are now) to a
temporary directory, makes the one-line change, runs the pytest selection that
should catch it, and prints a table: mutant -> caught / SURVIVED. The unmutated
copy runs first and must pass, or nothing below it means anything.

    python tests/mutants/run.py            # every mutant, its own test selection
    python tests/mutants/run.py --full     # every mutant against the whole suite
    python tests/mutants/run.py pair-byte-order gather-drops-last-chunk

Not collected by pytest (no test_ prefix); it takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str
    regenerate_golden: bool = False  # rerun fixtures/make_golden.py first, as someone "fixing" the pins would


C1 = ("tests/test_coding1.py", "tests/test_conformance.py")

C1M2 = ("tests/test_method2.py", "tests/test_coding1.py", "tests/test_conformance.py")

MUTANTS = [
    Mutant(
        "c1m2-mean-rounded-down",
        "kmcodec/coding1.py",
        "means = [(2 * ((total >> (16 * c)) & 0xFFFF) + n) // (2 * n) for c",
        "means = [(2 * ((total >> (16 * c)) & 0xFFFF)) // (2 * n) for c",
        C1M2,
        "coding 1 method 2: the mean colour is rounded down, not to nearest",
    ),
    Mutant(
        "c1m2-mean-of-four-rounded-down",
        "kmcodec/coding1.py",
        "total += 2 * (self.fields.dtype.type(1) << (16 * np.arange(channels))).sum()",
        "total += 0",
        C1M2,
        "coding 1 method 2: the mean of four present neighbours (the common case) is rounded down",
    ),
    Mutant(
        "c1m2-decoder-ranks-from-candidate-0",
        "kmcodec/coding1.py",
        "if escapes.mean:  # spec §11.13",
        "if False:  # spec §11.13",
        C1M2,
        "coding 1 method 2 decoder: escapes among choosing pixels count from candidate 0, as method 0",
    ),
    Mutant(
        "c1m2-decoder-absent-neighbours-averaged",
        "kmcodec/coding1.py",
        "[(absent >> np.uint16(j) & 1) == 0 for j in range(4)]",
        "[absent == absent for j in range(4)]",
        C1M2,
        "coding 1 method 2 decoder: absent neighbours (edges) enter the mean colour",
    ),
    Mutant(
        "c1m2-table-padding-unchecked",
        "kmcodec/packed_tables.py",
        "if self.data[byte] & ((1 << (8 - (self.pos & 7))) - 1):",
        "if False:",
        C1M2,
        "coding 1 method 2: non-zero bits after the last packed table are accepted",
    ),
    Mutant(
        "c1m2-golomb-13-zeros",
        "kmcodec/packed_tables.py",
        "if zeros > MAX_ZEROS:",
        "if zeros > MAX_ZEROS + 1:",
        C1M2,
        "coding 1 method 2: an Exp-Golomb code with 13 leading zeros is accepted",
    ),
    Mutant(
        "c1m2-frequencies-unscaled",
        "kmcodec/packed_tables.py",
        "return freqs << (rans.PRECISION - p)",
        "return freqs",
        C1M2,
        "coding 1 method 2 decoder: frequencies of a table with p < 12 are not scaled to 4096",
    ),
    Mutant(
        "c1m2-cache-misses-ignored",
        "kmcodec/coding1.py",
        "missing = np.flatnonzero(got == 0)",
        "missing = np.flatnonzero(got == 0)[: 0 if self.nearest.any() else None]",
        C1M2,
        "coding 1 method 2: after the first pass, mean colours not seen before get entry 0",
    ),
    Mutant(
        "c1z-bytes-after-frame",
        "kmcodec/zstd_labels.py",
        "    if pos != n:",
        "    if pos > n:",
        C1,
        "coding 1 method 1: bytes after the Zstandard frame are accepted",
    ),
    Mutant(
        "c1z-label-range",
        "kmcodec/zstd_labels.py",
        "bad = labels >= k",
        "bad = labels > k",
        C1,
        "coding 1 method 1: a label equal to K is accepted",
    ),
    Mutant(
        "c1z-content-size-plus-256",
        "kmcodec/zstd_labels.py",
        '+ (256 if size_bytes == 2 else 0)',
        '+ 0',
        C1,
        "coding 1 method 1: a 2-byte content size read without its +256",
    ),
    Mutant(
        "c1z-window-not-widened",
        "kmcodec/zstd_labels.py",
        "if single_segment and 1 << params.window_log < len(content):",
        "if False:",
        C1,
        "coding 1 method 1: large images get a multi-segment frame, so never method 1",
    ),
    Mutant(
        "c1z-never-chosen",
        "kmcodec/zstd_labels.py",
        "TRIAL_RATIO = 1.2",
        "TRIAL_RATIO = 0.0",
        C1,
        "coding 1: the encoder never writes method 1",
    ),
    Mutant(
        "c1-rans-word-order",
        "kmcodec/rans.py",
        'words[word_pos:end]',
        'words[word_pos:end][::-1]',
        C1,
        "coding 1: lanes of a round read their words in the wrong order",
    ),
    Mutant(
        "c1-rans-lane-from-round",
        "kmcodec/rans.py",
        'lane0 = index % lanes',
        'lane0 = 0',
        C1,
        "coding 1: every round starts at lane 0",
    ),
    Mutant(
        "c1-edge-strips-skipped",
        "kmcodec/coding1.py",
        'if planes[:, rows, cols].size:',
        'if False:',
        C1,
        "coding 1: pixels on the image's edges get the all-present code",
    ),
    Mutant(
        "c1-escape-skip-off-by-one",
        "kmcodec/coding1.py",
        't += s <= t',
        't += s < t',
        C1,
        "coding 1: escape ranks skip candidates off by one",
    ),
    Mutant(
        "c1-decoder-edges-skipped",
        "kmcodec/coding1.py",
        "edge, absent = geometry.edges()",
        "edge, absent = geometry.edges()\n    edge = edge[:0]",
        C1,
        "coding 1 decoder: pixels on the image's edges are taken as having 4 neighbours",
    ),
    Mutant(
        "c1-decoder-row-ends-kept",
        "kmcodec/coding1.py",
        "return pixels + (pixels // nx) * (row - nx)",
        "return pixels",
        C1,
        "coding 1 decoder: unanimous escapes ignore the slots past each row's end",
    ),
    Mutant(
        "c1-decoder-repeats-kept",
        "kmcodec/coding1.py",
        "first &= ~((code >> (4 + i) & 1) << b)",
        "first &= first",
        C1,
        "coding 1 decoder: a label held by two neighbours is skipped twice by escape ranks",
    ),
    Mutant(
        "c1-decoder-unsorted-skips",
        "kmcodec/coding1.py",
        "((0, 1), (2, 3), (0, 2), (1, 3), (1, 2))",
        "((0, 1), (2, 3), (0, 2), (1, 3))",
        C1,
        "coding 1 decoder: the candidates' positions are not fully sorted before skipping them",
    ),
    Mutant(
        "c1-decoder-escapes-unmerged",
        "kmcodec/coding1.py",
        "read.at_u = np.arange(unanimous.size) + np.searchsorted(chosen, unanimous)\n"
        "        read.at_c = np.arange(chosen.size) + np.searchsorted(unanimous, chosen)",
        "read.at_u = np.arange(unanimous.size)\n        read.at_c = unanimous.size + np.arange(chosen.size)",
        C1,
        "coding 1 decoder: unanimous escapes' ranks are read before the others', not in raster order",
    ),
    Mutant(
        "c1-threaded-c-from-b-neighbours",
        "kmcodec/coding1.py",
        'prepared_c = pool.submit(prepare_pass, c, sources["C"], pool)',
        'prepared_c = pool.submit(prepare_pass, c, sources["B"], pool)',
        ("tests/test_coding1.py",),
        "coding 1 decoder, worker thread (large images): pass C is prepared from pass B's neighbours",
    ),
    Mutant(
        "c1-threaded-b-finished-twice",
        "kmcodec/coding1.py",
        'fine[0::2, 1::2] = finished_b.result()',
        'fine[0::2, 1::2] = finish_pass(prepared_b, read_pass(symbols, prepared_b), symbols.escapes)',
        ("tests/test_coding1.py",),
        "coding 1 decoder, worker thread: pass B's symbols are read twice",
    ),
    Mutant(
        "c1-threaded-path-unreached",
        "kmcodec/coding1.py",
        "c.ny * c.nx >= THREAD_MIN_PIXELS",
        "c.ny * c.nx >= THREAD_MIN_PIXELS and False",
        ("tests/test_coding1.py",),
        "coding 1 decoder: the worker-thread path is never taken",
    ),
    Mutant(
        "c1-split-halves-overlap",
        "kmcodec/coding1.py",
        "other = pool.submit(work, n // 2, n)",
        "other = pool.submit(work, n // 2 + 1, n)",
        ("tests/test_coding1.py",),
        "coding 1 decoder, worker thread: the second half of a split finish skips one pixel",
    ),
    Mutant(
        "c1-split-unreached",
        "kmcodec/coding1.py",
        "    if pool is None or n < SPLIT_MIN:\n",
        "    if True:\n",
        ("tests/test_coding1.py",),
        "coding 1 decoder: large finishes are never split in halves between the threads",
    ),
    Mutant(
        "c1-gather-not-waited",
        "kmcodec/coding1.py",
        "                gathered.result()\n",
        "                pass\n",
        ("tests/test_coding1.py",),
        "coding 1 decoder, worker thread: a block's choices are read before the worker has gathered its contexts",
    ),
    Mutant(
        "c1-gather-edge-keys-unsorted",
        "kmcodec/coding1.py",
        "    kept = kept[np.argsort(edge[kept])]\n",
        "    kept = kept\n",
        ("tests/test_coding1.py",),
        "coding 1 decoder, worker thread: the edge pixels' keys are put in the wrong blocks",
    ),
    Mutant(
        "c1m2-edge-means-not-redone",
        "kmcodec/coding1.py",
        "edge = np.flatnonzero(~np.logical_and.reduce(here))",
        "edge = np.flatnonzero(~np.logical_and.reduce(here))[:0]",
        C1M2,
        "coding 1 method 2: escapes with an absent neighbour keep the mean of all four",
    ),
    Mutant(
        "c1m2-nearest-few-without-norms",
        "kmcodec/_nearest.py",
        'table = np.vstack([-2.0 * p.T, np.einsum("ij,ij->i", p, p)[None, :]])',
        'table = np.vstack([-2.0 * p.T, 0 * np.einsum("ij,ij->i", p, p)[None, :]])',
        ("tests/test_palette.py",) + C1M2,
        "coding 1 method 2 decoder: the search of new mean colours leaves out |p|^2",
    ),
    Mutant(
        "c1-encoder-band-gap-offset-lost",
        "kmcodec/coding1.py",
        "missed = np.concatenate([band.missed + first for band, first in zip(parts, before)])",
        "missed = np.concatenate([band.missed for band in parts])",
        ("tests/test_coding1.py",),
        "coding 1 encoder, bands of a large pass: the escapes' places restart in every band",
    ),
    Mutant(
        "c1-encoder-band-escapes-interleaved",
        "kmcodec/coding1.py",
        """    for band in parts:
        out.extend(band.choices)
    for band in parts:
        out.extend(band.escapes)""",
        """    for band in parts:
        out.extend(band.choices)
        out.extend(band.escapes)""",
        ("tests/test_coding1.py",),
        "coding 1 encoder, bands of a large pass: each band's escapes follow its own choices",
    ),
    Mutant(
        "c1-threaded-encode-out-of-order",
        "kmcodec/coding1.py",
        "done = iter(list(pool.map(lambda job: band_symbols(labels, escapes, *job), jobs)))",
        "done = iter(list(pool.map(lambda job: band_symbols(labels, escapes, *job), jobs[1:] + jobs[:1])))",
        ("tests/test_coding1.py",),
        "coding 1 encoder, two threads (large images): the first band is written last",
    ),
    Mutant(
        "c1-threaded-encode-unreached",
        "kmcodec/coding1.py",
        "if width * height >= 4 * THREAD_MIN_PIXELS:",
        "if width * height >= 4 * THREAD_MIN_PIXELS and False:",
        ("tests/test_coding1.py",),
        "coding 1 encoder: the two-thread path is never taken",
    ),
    Mutant(
        "c1-chunk-offset-lost",
        "kmcodec/coding1.py",
        "at += np.arange(start, end)",
        "at += np.arange(0, end - start)",
        ("tests/test_coding1.py",),
        "coding 1 decoder (large passes): chunks after the first copy the first chunk's neighbours",
    ),
    Mutant(
        "c1-absent-table-unchecked",
        "kmcodec/rans.py",
        "absent = [c for c in contexts if not self.present[c]]",
        "absent = []",
        C1,
        "coding 1: a symbol whose context has no table decodes (from zero entries) when its call names its contexts",
    ),
    Mutant(
        "c1-gap-off-by-one",
        "kmcodec/coding1.py",
        'at = np.cumsum(gaps + 1) - 1',
        'at = np.cumsum(gaps + 1)',
        C1,
        "coding 1: escape gaps one pixel late",
    ),
    Mutant(
        "c1-escape-count-unchecked",
        "kmcodec/coding1.py",
        'if count > unanimous:',
        'if count > unanimous + 1:',
        C1,
        "coding 1: an escape count one over the unanimous pixels passes",
    ),
    Mutant(
        "c1-extra-byte-left-over",
        "kmcodec/rans.py",
        'if left >= 8:',
        'if left >= 16:',
        C1,
        "coding 1: a whole unread extra-bit byte passes",
    ),
    Mutant(
        "c1-lane-end-unchecked",
        "kmcodec/rans.py",
        'if (self.state != STATE_LOW).any():',
        'if False:',
        C1,
        "coding 1: lanes need not end at 65536",
    ),
    Mutant(
        "c1-bound-unchecked",
        "kmcodec/container.py",
        'if length > longest:',
        'if length > longest + 2:',
        C1,
        "coding 1: a file 2 bytes over the bound passes",
    ),
    Mutant(
        "c1-no-fallback",
        "kmcodec/codec.py",
        'if len(stream) < header.size.label_bytes:',
        'if True:',
        C1,
        "compress writes coding 1 even when it is not smaller",
    ),
    # Method 2 table checks caught by the conformance files (fixtures/make_conformance.py).
    Mutant(
        "c1m2-frequencies-sum-2p",
        "kmcodec/packed_tables.py",
        "if rest < 1:",
        "if rest < 0:",
        C1,
        "coding 1 method 2: frequencies summing to 2^p (last symbol 0) accepted",
    ),
    Mutant(
        "c1m2-precision-13",
        "kmcodec/packed_tables.py",
        "if p > rans.PRECISION:",
        "if p > rans.PRECISION + 1:",
        C1,
        "coding 1 method 2: precision 13 accepted",
    ),
    Mutant(
        "c1m2-n-over-alphabet",
        "kmcodec/packed_tables.py",
        "if n > alphabet:",
        "if n > alphabet + 1:",
        C1,
        "coding 1 method 2: a table one symbol larger than its alphabet accepted",
    ),
    Mutant(
        "pair-byte-order",
        "kmcodec/codec.py",
        "np.concatenate([table[both & 255], table[both >> 8]], axis=1)",
        "np.concatenate([table[both >> 8], table[both & 255]], axis=1)",
        ("tests/test_codec.py",),
        "two-byte lookup reads its bytes in the wrong order",
    ),
    Mutant(
        "gather-drops-last-chunk",
        "kmcodec/codec.py",
        "list(pool.map(part, starts))",
        "list(pool.map(part, starts[:-1]))",
        ("tests/test_codec.py",),
        "threaded gather drops its last chunk",
    ),
    Mutant(
        "decode-shares-bytearray",
        "kmcodec/codec.py",
        "shared = isinstance(data, bytes) or",
        "shared = isinstance(data, (bytes, bytearray)) or",
        ("tests/test_codec.py",),
        "decode keeps a view of the caller's bytearray",
    ),
    Mutant(
        "pack-skips-label-check",
        "kmcodec/codec.py",
        "if labels.max() >= k or labels.min() < 0:",
        "if labels.min() < 0:",
        ("tests/test_codec.py",),
        "pack() writes labels >= k",
    ),
    Mutant(
        "info-check-always-valid",
        "kmcodec/cli.py",
        '"check_valid": check,',
        '"check_valid": True,',
        ("tests/test_cli_errors.py",),
        "kmq info reports check_valid: true for a bad CRC",
    ),
    Mutant(
        "bad-label-loses-chunk-offset",
        "kmcodec/bitpack.py",
        "check_range(unpack_range(buf, start, n, bits), k, width, start)",
        "check_range(unpack_range(buf, start, n, bits), k, width, 0)",
        ("tests/test_bitpack.py",),
        "the error names the wrong pixel past the first chunk (decode's check)",
    ),
    Mutant(
        "unpack-loses-chunk-offset",
        "kmcodec/bitpack.py",
        "check_range(labels[start : start + n], k, width, start)",
        "check_range(labels[start : start + n], k, width, 0)",
        ("tests/test_bitpack.py",),
        "the error names the wrong pixel past the first chunk (unpack_labels)",
    ),
    Mutant(
        "validate-materialises-labels",
        "kmcodec/codec.py",
        "bitpack.check_labels(self._payload,",
        "bitpack.unpack_labels(self._payload,",
        ("tests/test_hostile.py",),
        "validation holds every label in memory",
    ),
    Mutant(
        "validate-bool-per-payload-byte",
        "kmcodec/bitpack.py",
        "holds_bad[buf[start : start + CHUNK]].any()",
        "holds_bad[buf].any()",
        ("tests/test_hostile.py",),
        "validation's byte lookup makes one bool per payload byte (the pre-issue-12 code)",
    ),
    Mutant(
        "no-refinement-at-large-k",
        "kmcodec/palette.py",
        "polish=POLISH_STEPS if k >= POLISH_MIN_K else 0",
        "polish=0",
        ("tests/test_palette.py", "tests/test_golden.py"),
        "the final rounded-Lloyd refinement is skipped at k >= 64",
    ),
    Mutant(
        "worst-restart-wins",
        "kmcodec/palette.py",
        "candidates.sort(key=lambda c: (c[0], c[1]))",
        "candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)",
        ("tests/test_palette.py", "tests/test_golden.py"),
        "the restart of highest coarse cost is refined (once caught only by golden byte pins)",
    ),
    Mutant(
        "unused-entries-kept",
        "kmcodec/palette.py",
        "    if not used.all():\n",
        "    if False:\n",
        ("tests/test_palette.py",),
        "unused palette entries are not dropped (counted colours)",
    ),
    Mutant(
        "unused-entries-kept-uncounted",
        "kmcodec/palette.py",
        "is some pixel's\n    if not used.all():\n",
        "is some pixel's\n    if False:\n",
        ("tests/test_palette.py",),
        "unused palette entries are not dropped (uncounted colours)",
    ),
    Mutant(
        "worst-restart-wins+regenerated-golden",
        "kmcodec/palette.py",
        "candidates.sort(key=lambda c: (c[0], c[1]))",
        "candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)",
        ("tests/test_golden.py",),
        "worst restart wins, golden files regenerated: only their quality floor can notice",
        regenerate_golden=True,
    ),
    Mutant(
        "one-lloyd-step+regenerated-golden",
        "kmcodec/palette.py",
        "lloyd(cp, cw, cs, start, max_iter=max_iter, tol=tol_abs)",
        "lloyd(cp, cw, cs, start, max_iter=1, tol=tol_abs)",
        ("tests/test_golden.py",),
        "one Lloyd step per restart on the coarse set, golden files regenerated",
        regenerate_golden=True,
    ),
    Mutant(
        "js-m2-tables-unscaled",
        "kmcodec/web/coding1.js",
        "for (let s = 0; s < n; s++) freq[s] <<= scale;",
        "",
        ("tests/test_web_coding1.py",),
        "JS decoder, method 2: packed frequencies not scaled by 2^(12 - p)",
    ),
    Mutant(
        "js-m2-table-padding-unchecked",
        "kmcodec/web/coding1.js",
        "if (rest > 0 && (this.stream.bytes",
        "if (false && (this.stream.bytes",
        ("tests/test_web_coding1.py",),
        "JS decoder, method 2: a non-zero padding bit after the last packed table passes",
    ),
    Mutant(
        "js-m2-escape-ref-of-method-0",
        "kmcodec/web/coding1.js",
        "const ref = ctx.fromMean && m > 1 ? nearestToMean(ctx, pattern) : CAND[0];",
        "const ref = CAND[0];",
        ("tests/test_web_coding1.py", "tests/test_web_decoder.py"),
        "JS decoder, method 2: escape ranks counted from the first candidate, not the neighbours' mean colour",
    ),
    Mutant(
        "js-m2-mean-truncated",
        "kmcodec/web/coding1.js",
        "Math.floor((2 * sum + present) / (2 * present))",
        "Math.floor(sum / present)",
        ("tests/test_web_coding1.py",),
        "JS decoder, method 2: the neighbours' mean colour truncated, not rounded half up",
    ),
    Mutant(
        "js-m2-ref-cache-unkeyed",
        "kmcodec/web/coding1.js",
        "ctx.refs[slot] >= 0 && ctx.refKeys[slot] === key",
        "ctx.refs[slot] >= 0",
        ("tests/test_web_coding1.py",),
        "JS decoder, method 2: the memoised nearest entry is reused for another mean colour in its cache slot",
    ),
    Mutant(
        "js-m2-nearest-tie-by-walk",
        "kmcodec/web/coding1.js",
        "if (distance < best || (distance === best && i < ref)) {",
        "if (distance < best) {",
        ("tests/test_web_coding1.py",),
        "JS decoder, method 2: entries at equal distance from the mean go by distance from candidate 0, not by index",
    ),
    Mutant(
        "js-m2-nearest-walk-cut-short",
        "kmcodec/web/coding1.js",
        "roots[j] - reach <= Math.sqrt(best) + 1e-6",
        "roots[j] <= Math.sqrt(best)",
        ("tests/test_web_coding1.py",),
        "JS decoder, method 2: the nearest-entry walk stops without the mean's distance from candidate 0",
    ),
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def scratch_copy(target: Path) -> None:
    """The working tree as it is now: tracked files with their edits, and new files git does not ignore."""
    for name in tracked_files():
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def copy_env(copy: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")


def run_pytest(copy: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = copy_env(copy)
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    return subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)


def imports_the_copy(copy: Path) -> bool:
    env = copy_env(copy)
    probe = [sys.executable, "-c", "import kmcodec; print(kmcodec.__file__)"]
    found = subprocess.run(probe, cwd=copy, env=env, capture_output=True, text=True).stdout.strip()
    return Path(found).resolve().is_relative_to(copy.resolve())


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("FAILED ") or line.startswith("ERROR "):
            return line.split(" ", 1)[1].split(" - ")[0]
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--full", action="store_true", help="run the whole suite for each mutant")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    survived = 0
    with tempfile.TemporaryDirectory(prefix="kmq-mutants-") as tmp:
        Path(tmp).chmod(0o755)  # the unprivileged CLI tests run kmq as nobody, who must read the copy
        copy = Path(tmp) / "repo"
        scratch_copy(copy)
        if not imports_the_copy(copy):
            print("the scratch copy does not import its own kmcodec; aborting", file=sys.stderr)
            return 2
        selections = {("tests",) if args.full else m.tests for m in chosen}
        for tests in sorted(selections):
            baseline = run_pytest(copy, tests)
            if baseline.returncode != 0:
                print(f"unmutated copy fails {' '.join(tests)}:\n{baseline.stdout[-2000:]}", file=sys.stderr)
                return 2
        print(f"{'mutant':38} {'file':20} {'result':9} first failing test", flush=True)
        for mutant in chosen:
            path = copy / mutant.path
            original = path.read_text()
            if original.count(mutant.old) < 1:
                print(f"{mutant.name:38} {mutant.path:20} {'NOT FOUND':9} (code changed: update the mutant)", flush=True)
                survived += 1
                continue
            path.write_text(original.replace(mutant.old, mutant.new))
            golden = copy / "fixtures" / "golden"
            saved = {p.name: p.read_bytes() for p in golden.iterdir()} if mutant.regenerate_golden else {}
            try:
                if mutant.regenerate_golden:
                    subprocess.run([sys.executable, "fixtures/make_golden.py"], cwd=copy, env=copy_env(copy), capture_output=True, check=True)
                result = run_pytest(copy, ("tests",) if args.full else mutant.tests)
            finally:
                path.write_text(original)
                for name, data in saved.items():
                    (golden / name).write_bytes(data)
            caught = result.returncode != 0
            survived += not caught
            print(f"{mutant.name:38} {mutant.path:20} {'caught' if caught else 'SURVIVED':9} {first_failure(result.stdout)}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
