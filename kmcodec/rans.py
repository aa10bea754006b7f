"""Entropy coding for coding 1 (spec §11.6-§11.8): static-frequency interleaved rANS.

Every symbol is coded with a table of 12-bit frequencies chosen by its context.
Symbol i of the file is coded by lane ``i mod lanes``; all lanes share one stream
of 16-bit words, read in symbol order. Because lanes are independent, a whole
round of up to ``lanes`` symbols is decoded by a few numpy operations, which is
what makes a pure-numpy decoder fast.

Also here: the frequency tables' byte form, the hybrid integer tokens, and the
raw "extra bits" stream that carries the low bits of large integers.
"""

from __future__ import annotations

import numpy as np

from .errors import StreamEndError, StreamStructureError, SymbolRangeError

PRECISION = 12  # frequencies sum to 2**12 in every table
TOTAL = 1 << PRECISION
STATE_LOW = 1 << 16  # lane states live in [2**16, 2**32); decoding ends with every lane here
MAX_LANES = 65535

# Hybrid integer tokens (spec §11.7): values below 16 are their own token;
# larger ones keep their top two bits in the token and the rest as extra bits.
DIRECT_TOKENS = 16
TOKENS = DIRECT_TOKENS + 2 * 28  # 72 tokens cover every value below 2**32

# A decode table entry packs frequency (13 bits) | symbol (7 bits) | slot - start (12 bits):
# the frequency on top takes one shift to unpack, the symbol is unpacked once per call.
_FREQ_SHIFT, _SYM_SHIFT = 19, 12


# --- hybrid integer tokens ----------------------------------------------------


def to_tokens(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token, extra bit count, extra bits) for non-negative integers below 2**32."""
    v = np.asarray(values, np.int64)
    e = np.zeros(v.shape, np.int64)
    big = v >= DIRECT_TOKENS
    e[big] = _bit_length(v[big]) - 1
    tokens = np.where(big, DIRECT_TOKENS + 2 * (e - 4) + ((v >> np.maximum(e - 1, 0)) & 1), v)
    nbits = np.where(big, e - 1, 0)
    extra = v & ((np.int64(1) << nbits) - 1)
    return tokens, nbits, extra


def _token_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per token: its count of extra bits and the value it stands for when they are all 0."""
    t = np.arange(TOKENS, dtype=np.int64)
    e = 4 + ((t - DIRECT_TOKENS) >> 1)
    base = np.where(t < DIRECT_TOKENS, t, (np.int64(1) << e) | (((t - DIRECT_TOKENS) & 1) << (e - 1)))
    return np.where(t < DIRECT_TOKENS, 0, e - 1), base


TOKEN_EXTRA_BITS, TOKEN_BASE = _token_tables()


def token_extra_bits(tokens: np.ndarray) -> np.ndarray:
    """How many extra bits follow each token."""
    return TOKEN_EXTRA_BITS[np.asarray(tokens, np.intp)]


def from_tokens(tokens: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Values from tokens and their extra bits (inverse of `to_tokens`)."""
    return TOKEN_BASE[np.asarray(tokens, np.intp)] + np.asarray(extra, np.int64)


def _bit_length(v: np.ndarray) -> np.ndarray:
    """bit_length of positive int64 values, exactly (no floating point)."""
    out = np.zeros(v.shape, np.int64)
    v = v.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        high = v >= (np.int64(1) << shift)
        out[high] += shift
        v[high] >>= shift
    return out + (v > 0)


# --- frequency tables -----------------------------------------------------------


def normalise(counts: np.ndarray, scale: int = TOTAL) -> np.ndarray:
    """Frequencies summing to `scale` (2**12 unless a method-2 table chose less), at least 1 for every symbol that occurs."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    freqs = np.where(counts > 0, np.maximum(1, (counts * scale + total // 2) // max(total, 1)), 0)
    # Take the surplus from (or give the shortfall to) the most frequent symbols, never below 1.
    diff = int(freqs.sum()) - scale
    for index in np.argsort(-counts, kind="stable"):
        if diff == 0:
            break
        if diff > 0:
            take = min(diff, int(freqs[index]) - 1)
            freqs[index] -= take
            diff -= take
        elif counts[index] > 0:
            freqs[index] -= diff
            diff = 0
    return freqs


def cost_bits(counts: np.ndarray, freqs: np.ndarray) -> float:
    """Bits rANS spends on symbols with these counts under these frequencies."""
    used = counts > 0
    return float(-(counts[used] * np.log2(freqs[used] / TOTAL)).sum())


def write_varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def write_table(freqs: np.ndarray, out: bytearray) -> None:
    """n = highest used symbol + 1, then the first n - 1 frequencies; the last is implied."""
    n = int(np.flatnonzero(freqs)[-1]) + 1
    out.append(n)
    for f in freqs[: n - 1]:
        write_varint(int(f), out)


class Reader:
    """Reads the byte fields of the stream, naming the offset of every failure."""

    def __init__(self, data: memoryview, where: str) -> None:
        self.data = data
        self.pos = 0
        self.where = where

    def u8(self, field: str) -> int:
        self._need(1, field)
        self.pos += 1
        return self.data[self.pos - 1]

    def uint(self, size: int, field: str) -> int:
        self._need(size, field)
        self.pos += size
        return int.from_bytes(self.data[self.pos - size : self.pos], "little")

    def varint(self, field: str) -> int:
        start = self.pos
        value = 0
        for shift in (0, 7):
            byte = self.u8(field)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise StreamStructureError(f"bad {field} at byte {self.where_at(start)}: a frequency takes at most 2 bytes")

    def where_at(self, pos: int) -> str:
        return f"{self.where} + {pos}"

    def _need(self, size: int, field: str) -> None:
        if self.pos + size > len(self.data):
            raise StreamEndError(f"stream ends early: {field} at byte {self.where_at(self.pos)} needs {size} bytes, the stream has {len(self.data) - self.pos} left")


def read_table(reader: Reader, alphabet: int, name: str) -> np.ndarray:
    """One frequency table (spec §11.6); returns `alphabet` frequencies."""
    start = reader.pos
    n = reader.u8(f"{name} size")
    if not 1 <= n <= alphabet:
        raise StreamStructureError(f"bad {name} at byte {reader.where_at(start)}: {n} symbols, allowed 1..{alphabet}")
    freqs = np.zeros(alphabet, np.int64)
    for s in range(n - 1):
        freqs[s] = reader.varint(f"{name} frequency")
    rest = TOTAL - int(freqs.sum())
    if rest < 1:
        raise StreamStructureError(
            f"bad {name} at byte {reader.where_at(start)}: frequencies sum to {TOTAL - rest}, more than {TOTAL - 1} before the last symbol"
        )
    freqs[n - 1] = rest
    return freqs


def decode_table(tables: list[np.ndarray | None], alphabets: list[int]) -> np.ndarray:
    """The slot -> (frequency, symbol, offset) lookup for every context; absent tables decode to 0 (invalid)."""
    out = np.zeros((len(tables), TOTAL), np.uint32)
    rows = [ctx for ctx, freqs in enumerate(tables) if freqs is not None]
    if rows:
        freqs = np.stack([tables[ctx] for ctx in rows])  # rows x symbols, each row sums to TOTAL
        starts = np.cumsum(freqs, axis=1) - freqs
        symbols = np.arange(freqs.shape[1])
        # Per (row, symbol): the entry of its first slot, less its start, so that adding a
        # slot number gives that slot's entry. One small table, one take: few fresh pages.
        first = ((freqs << _FREQ_SHIFT) | (symbols << _SYM_SHIFT)) - starts
        entry = np.repeat(first.reshape(-1).astype(np.uint32), freqs.reshape(-1))
        out[rows] = entry.reshape(len(rows), TOTAL) + np.arange(TOTAL, dtype=np.uint32)
    return out.reshape(-1)


# --- interleaved rANS -------------------------------------------------------------


def encode(contexts: np.ndarray, symbols: np.ndarray, tables: np.ndarray, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """rANS-code symbols (in file order) with per-context frequency rows of `tables`.

    Returns (initial lane states for the decoder, 16-bit words in reading order).
    Symbols are encoded in reverse, a round of lanes at a time, so the decoder
    reads the words forwards.
    """
    rows = tables.shape[1]
    freqs = tables.reshape(-1).astype(np.uint64)
    starts = (np.cumsum(tables, axis=1) - tables).reshape(-1).astype(np.uint64)
    entries = (starts << np.uint64(16)) | freqs  # start and frequency in one word: one gather per round
    state = np.full(lanes, STATE_LOW, np.uint64)
    chunks: list[np.ndarray] = []
    low16, shift16, shift, overflow = np.uint64(0xFFFF), np.uint64(16), np.uint64(PRECISION), np.uint64(32 - PRECISION)
    end = contexts.size
    while end > 0:
        start = (end - 1) // lanes * lanes
        index = contexts[start:end].astype(np.intp)  # per round: no array as long as the file
        index *= rows
        index += symbols[start:end]
        entry = entries.take(index)
        f = entry & low16
        if not f.all():
            raise ValueError("a symbol has frequency 0 in its table")
        x = state[: end - start]
        out = x >= (f << overflow)  # would overflow: emit the low word first
        if out.any():
            chunks.append((x[out] & low16).astype(np.uint16)[::-1])
            x = np.where(out, x >> shift16, x)
        q, r = np.divmod(x, f)
        q <<= shift
        q += r
        q += entry >> shift16
        state[: end - start] = q
        end = start
    words = np.concatenate(chunks)[::-1] if chunks else np.zeros(0, np.uint16)
    return state.astype(np.uint32), words


class Decoder:
    """The decoder side of `encode`: lane states plus a cursor into the shared word stream."""

    def __init__(self, states: np.ndarray, words: np.ndarray, table: np.ndarray, where: str) -> None:
        self.state = states.astype(np.uint32)
        self.lanes = states.size
        self.words = words.astype(np.uint32)
        self.word_pos = 0
        self.index = 0  # symbols decoded so far: the next one uses lane index % lanes
        self.table = table
        self.present = table.reshape(-1, TOTAL)[:, 0] != 0  # contexts with a table
        self.where = where
        self._scratch = np.empty((2, self.lanes), np.uint32)
        self._need = np.empty(self.lanes, bool)

    def decode(self, base: np.ndarray, contexts: tuple[int, ...]) -> np.ndarray:
        """Decode one symbol per entry of `base`, in order, as uint8.

        `base` holds each symbol's context shifted to its row of the table
        (uint32 `context << PRECISION`); `contexts` lists every context it may
        hold, and only those of them without a table are looked for.
        """
        absent = [c for c in contexts if not self.present[c]]
        if absent:
            ctx = base >> np.uint32(PRECISION)
            ok = ctx != absent[0]
            for c in absent[1:]:
                ok &= ctx != c
            if not ok.all():
                # Decode the rounds before the one holding the first symbol without a table, so that
                # a stream ending early in them still reports that first, then name the symbol.
                bad = int(np.argmin(ok))
                symbol = self.index + bad
                self._rounds(base[: max(0, bad - symbol % self.lanes)])
                raise SymbolRangeError(f"symbol {symbol} needs context {int(ctx[bad])}, whose table is absent")
        entries = self._rounds(base)
        symbols = np.right_shift(entries, np.uint32(_SYM_SHIFT), out=entries).astype(np.uint8)
        return np.bitwise_and(symbols, np.uint8(0x7F), out=symbols)

    def _rounds(self, base: np.ndarray) -> np.ndarray:
        """The table entries of len(base) symbols, a round (up to one symbol per lane) at a time.

        Small files have few lanes and many rounds, so each round is a fixed
        handful of in-place numpy calls on preallocated buffers.
        """
        count = base.size
        entries = np.empty(count, np.uint32)
        table, words, lanes = self.table, self.words, self.lanes
        index, word_pos, done = self.index, self.word_pos, 0
        low, mask, shift, freq_shift, word_shift = np.uint32(STATE_LOW), np.uint32(TOTAL - 1), np.uint32(PRECISION), np.uint32(_FREQ_SHIFT), np.uint32(16)
        bit_and, bit_or, right_shift, multiply, add, less = np.bitwise_and, np.bitwise_or, np.right_shift, np.multiply, np.add, np.less
        full = (self.state, self._scratch[0], self._scratch[1], self._need)
        while done < count:
            lane0 = index % lanes
            n = min(count - done, lanes - lane0)
            if n == lanes:
                x, slot, freq, need = full
            else:
                x, slot, freq, need = self.state[lane0 : lane0 + n], self._scratch[0, :n], self._scratch[1, :n], self._need[:n]
            entry = entries[done : done + n]
            bit_and(x, mask, out=slot)
            bit_or(slot, base[done : done + n], out=slot)
            table.take(slot, out=entry, mode="clip")  # in range; "clip" writes to `out` unbuffered
            right_shift(entry, freq_shift, out=freq)
            right_shift(x, shift, out=x)
            multiply(x, freq, out=x)
            bit_and(entry, mask, out=slot)
            add(x, slot, out=x)  # freq * (x >> 12) + slot - start, in place in the lane states
            less(x, low, out=need)
            reads = need.nonzero()[0]  # lanes below 2**16 read one word each, in lane order
            if reads.size:
                end = word_pos + reads.size
                if end > words.size:
                    raise StreamEndError(
                        f"stream ends early: symbol {index} needs word {words.size} of the rANS words, there are {words.size}"
                    )
                x[reads] = (x[reads] << word_shift) | words[word_pos:end]
                word_pos = end
            done += n
            index += n
        self.index, self.word_pos = index, word_pos
        return entries

    def finish(self) -> None:
        """Every word read and every lane back at its start state (spec §11.8)."""
        if self.word_pos != self.words.size:
            raise StreamEndError(
                f"stream leaves bytes over: {self.words.size - self.word_pos} of {self.words.size} rANS words unread"
            )
        if (self.state != STATE_LOW).any():
            lane = int(np.argmax(self.state != STATE_LOW))
            raise StreamEndError(
                f"stream ends in the wrong state: lane {lane} ends at {int(self.state[lane]):#x}, must be {STATE_LOW:#x}"
            )


# --- the extra bits stream --------------------------------------------------------


def pack_bits(values: np.ndarray, nbits: np.ndarray) -> bytes:
    """Values of nbits each (0..31), MSB first, into bytes padded with zero bits.

    One byte per bit of output is the only array as long as the stream: bit j of
    every value is placed in one pass over the values, for j = 0..30.
    """
    nbits = np.asarray(nbits, np.int64)
    keep = nbits > 0
    values, nbits = np.asarray(values, np.int64)[keep], nbits[keep]
    if values.size == 0:
        return b""
    first = np.cumsum(nbits) - nbits
    bits = np.zeros(int(nbits.sum()), np.uint8)
    for j in range(int(nbits.max())):
        has = nbits > j  # values with a bit j (from the top)
        bits[first[has] + j] = (values[has] >> (nbits[has] - 1 - j)) & 1
    return np.packbits(bits).tobytes()


class BitReader:
    """Reads groups of bits from the extra-bit stream, MSB first, vectorised."""

    def __init__(self, data: np.ndarray, where: str) -> None:
        self.data = np.concatenate([data, np.zeros(8, np.uint8)])  # room for a 64-bit window
        self.bits = data.size * 8
        self.pos = 0
        self.where = where

    def read(self, nbits: np.ndarray) -> np.ndarray:
        nbits = np.asarray(nbits, np.int64)
        total = int(nbits.sum())
        if self.pos + total > self.bits:
            raise StreamEndError(
                f"stream ends early: the extra bits need {self.pos + total} bits, {self.where} has {self.bits}"
            )
        if not total:
            return np.zeros(nbits.size, np.int64)
        has = np.flatnonzero(nbits)  # most integers are small tokens without extra bits
        nbits_has = nbits[has]
        starts = self.pos + np.cumsum(nbits_has) - nbits_has
        self.pos += total
        byte = starts >> 3
        window = np.zeros(starts.size, np.uint64)
        for j in range(5):  # 5 bytes cover any 31-bit group at any bit offset
            window = (window << np.uint64(8)) | self.data[byte + j].astype(np.uint64)
        shift = (40 - (starts & 7) - nbits_has).astype(np.uint64)
        mask = (np.uint64(1) << nbits_has.astype(np.uint64)) - np.uint64(1)
        out = np.zeros(nbits.size, np.int64)
        out[has] = ((window >> shift) & mask).astype(np.int64)
        return out

    def finish(self) -> None:
        left = self.bits - self.pos
        if left >= 8:
            raise StreamEndError(f"stream leaves bytes over: {left // 8} unread bytes of extra bits in {self.where}")
        if left and int(self.data[self.bits // 8 - 1]) & ((1 << left) - 1):
            raise StreamEndError(f"non-zero padding in the last byte of the extra bits ({self.where})")
