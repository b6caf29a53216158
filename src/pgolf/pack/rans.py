"""An entropy coder for quantized weight codes: interleaved rANS with width contexts (pure numpy).

General codecs see a tensor's int8 codes as one byte stream and model it, at best, with one
distribution per block (brotli-11 lands within ~1% of the tensor's order-0 entropy). Trained weight
matrices have more structure than that: the spread of the codes differs from row to row (a row-max
clip puts each row's largest weight at +-qmax, so a row with one outlier has narrow codes) and from
column to column (input features of different scale). This coder models it:

- **Widths.** Each code tensor, viewed as a matrix [rows, cols] (`shape[0]` x the rest), gets a
  per-row log-width `alpha_r` and a per-column offset `beta_c`, fitted so that
  `2**((alpha_r + beta_c) / STEPS)` tracks the mean |code| of the cell (alternating means, on a
  grid of 1/STEPS octave). They are stored as int8 side information (about one byte per row and per
  column, before compression: well under 1% of the codes for matrices of 32+ rows and columns).
  Per tensor, `choose_widths` keeps the row and/or column widths only where they pay for their
  side information; rows shorter than `MIN_ROW` columns never get their own alpha, matrices with
  fewer than `MIN_COL` rows never get a beta.
- **Contexts.** A code's context is its width class `w = alpha_r + beta_c` within its *group*, the
  tensors of one code width (int5, int6, int8 ... from the codes' range). Every context has its own
  empirical distribution over the codes, counted over the whole model and transmitted as 8-bit
  log-counts (1/8 octave resolution: costs < 0.1% against exact counts). So the coder adapts to any
  shape of distribution (GPTQ, SDClip, row-max, pruned zeros) while its tables stay a few KB.
- **rANS** (Duda 2013, interleaved as in Giesen 2014). 32-bit states in [2**16, 2**32), 16-bit
  renormalization, probabilities of PROB_BITS bits, `lanes` interleaved states (symbol i belongs to
  lane i % lanes), one shared word stream. Each step codes one symbol per lane with a few numpy
  operations; there is no Python loop per symbol: 26.5M codes decode in ~0.85 s on one CPU core.
  The decoder must end with every lane back at the initial state and every word consumed, which
  catches most corruption (the container's crc32 catches the rest).

Everything the decoder computes is integer arithmetic on transmitted integers (no floating point,
no platform-dependent rounding), so every machine decodes the same codes. The encoder fits the
widths in floating point; that only decides which (valid) model is sent.

The side information and tables (`model` bytes) are compressed by a general codec in the container;
the rANS words (`stream` bytes) are not compressible further.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

STATE_LOW = 1 << 16  # rANS states live in [STATE_LOW, 2**32)
PROB_BITS = 14  # probabilities are integers out of 2**PROB_BITS (at most 15: see normalize_counts)
MAX_LOG2_LANES = 10  # 1,024 lanes: 4 KB of final states, ~1 s to decode 30M codes
MIN_SYMBOLS_PER_LANE = 2048  # fewer lanes for small inputs keeps the state overhead < 0.2%
STEPS = 4  # width grid: 1/4 octave (a 19% step in code spread)
MIN_ROW = 32  # a per-row width needs at least this many columns
MIN_COL = 32  # per-column widths need at least this many rows
MODEL_VERSION = 1
WIDTH_FLOOR = -4.0  # log2 of the smallest width modeled: a mean |code| of 1/16 (nearly all zeros)
BETA_RANGE = 32  # |beta| <= 8 octaves
MAX_CONTEXTS = 4096  # 8 code widths x the width classes of alpha + beta: a few hundred in practice
# Decoding ceilings, checked before the decoder allocates by a count the input declares:
# - symbols (the shapes): one byte of output, two of contexts each; the container's 1 GiB ceiling;
# - table slots (contexts << prob_bits, 9 bytes each): the encoder's widths lie in about [-48, 60]
#   (alpha in [-16, 28], beta in [-32, 32]), about 109 contexts per code width, 8 widths at most;
#   adversarial weights of 7 widths reach ~620 contexts. 2**24 slots = 1,024 contexts at PROB_BITS,
#   150 MB of tables.
MAX_SYMBOLS = 1 << 30
MAX_TABLE_SLOTS = 1 << 24

# 2**(j/8) in 16-bit fixed point, j = 0..7: log-count code k > 0 means a count of
# LOG_MANTISSA[(k - 1) % 8] << ((k - 1) // 8) (relative units; only ratios matter).
LOG_STEPS = 8
LOG_MANTISSA = (65536, 71468, 77936, 84990, 92682, 101070, 110218, 120194)


class RansError(ValueError):
    """The model or stream bytes are inconsistent (corrupt or truncated input)."""


# ----------------------------------------------------------------------------- shapes


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """The [rows, cols] view of a tensor: shape[0] x prod(shape[1:]); 1-D is one row, 0-D is 1 x 1."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, int(shape[0])
    return int(shape[0]), math.prod(int(d) for d in shape[1:])


def lanes_for(num_symbols: int) -> int:
    """log2 of the lane count for `num_symbols` codes: at least MIN_SYMBOLS_PER_LANE per lane."""
    k = 0
    while k < MAX_LOG2_LANES and (num_symbols >> (k + 1)) >= MIN_SYMBOLS_PER_LANE:
        k += 1
    return k


# ----------------------------------------------------------------------------- frequency tables


def log_count_codes(counts: np.ndarray) -> np.ndarray:
    """uint8 log-count codes of non-negative counts: 0 for 0, else 1 + round(8 * log2(count)) (encoder only)."""
    c = counts.astype(np.float64)
    codes = np.zeros(counts.shape, dtype=np.uint8)
    nz = c > 0
    codes[nz] = np.clip(np.rint(LOG_STEPS * np.log2(c[nz])) + 1, 1, 255).astype(np.uint8)
    return codes


def expand_log_counts(codes: np.ndarray) -> np.ndarray:
    """int64 relative counts of uint8 log-count codes (exact integer arithmetic)."""
    k = codes.astype(np.int64) - 1
    mant = np.asarray(LOG_MANTISSA, dtype=np.int64)[np.maximum(k, 0) % LOG_STEPS]
    return np.where(k >= 0, mant << (np.maximum(k, 0) // LOG_STEPS), 0)


def normalize_counts(counts: np.ndarray, prob_bits: int) -> np.ndarray:
    """Integer frequencies [C, 256] summing to 2**prob_bits per non-empty row; count > 0 -> freq >= 1.

    Rounds each count to the nearest share, lifts rare symbols to 1, and settles the difference on
    the most frequent symbol (ties: lowest symbol). Integer-only, so every machine agrees.
    """
    total_m = 1 << prob_bits
    counts = counts.astype(np.int64)
    freq = np.zeros(counts.shape, dtype=np.int64)
    for r in range(counts.shape[0]):
        c = counts[r]
        total = int(c.sum())
        if total == 0:
            continue
        # relative counts stay below 2**48 (log code <= 255), so c * 2**15 cannot overflow int64
        f = (c * total_m + total // 2) // total
        f[(c > 0) & (f == 0)] = 1
        diff = total_m - int(f.sum())
        while diff != 0:
            i = int(np.argmax(f))
            step = diff if diff > 0 else -min(-diff, int(f[i]) - 1)
            assert step != 0, "cannot normalize frequencies"
            f[i] += step
            diff -= step
        freq[r] = f
    return freq


# ----------------------------------------------------------------------------- interleaved rANS


def encode_stream(sym: np.ndarray, ctx: np.ndarray, freq: np.ndarray, prob_bits: int, log2_lanes: int) -> bytes:
    """rANS-encode uint8 symbols `sym` [N] under contexts `ctx` [N] with frequencies `freq` [C, 256].

    Returns the lane states (uint32 each, the decoder's starting states) followed by the 16-bit words
    in the order the decoder reads them.
    """
    lanes, n = 1 << log2_lanes, sym.size
    freq_flat = freq.reshape(-1).astype(np.uint64)
    cum_flat = (np.cumsum(freq, axis=1) - freq).reshape(-1).astype(np.uint64)
    assert np.all(freq_flat[ctx.astype(np.int64) * 256 + sym] > 0), "a symbol has zero frequency"
    shift = np.uint64(32 - prob_bits)  # a state x may take symbol s iff x < freq[s] << shift
    pb, sixteen = np.uint64(prob_bits), np.uint64(16)
    x = np.full(lanes, STATE_LOW, dtype=np.uint64)
    groups: list[np.ndarray] = []
    for t in range((n + lanes - 1) // lanes - 1, -1, -1):
        lo, hi = t * lanes, min(n, (t + 1) * lanes)
        i = ctx[lo:hi].astype(np.int64) * 256 + sym[lo:hi]
        f, c = freq_flat[i], cum_flat[i]
        xs = x[: hi - lo]
        emit = xs >= (f << shift)
        if emit.any():
            groups.append((xs[emit] & np.uint64(0xFFFF)).astype("<u2"))
            xs[emit] >>= sixteen
        x[: hi - lo] = ((xs // f) << pb) + (xs % f) + c
    words = np.concatenate(groups[::-1]) if groups else np.zeros(0, dtype="<u2")
    return x.astype("<u4").tobytes() + words.tobytes()


def decoding_tables(freq: np.ndarray, prob_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Tables indexed by context << prob_bits | slot: the symbol (uint8) and freq << 16 | (slot - cum).

    A context without counts (never used by valid data) decodes as symbol 0 with certainty, so that
    every slot is defined. Built one context at a time: the memory is the tables' own 9 bytes a
    slot, not several int64 temporaries of the whole table (and it is faster).
    """
    num_ctx, total_m = freq.shape[0], 1 << prob_bits
    freq = freq.astype(np.int64).copy()
    freq[freq.sum(axis=1) == 0, 0] = total_m
    cum = np.cumsum(freq, axis=1) - freq
    sym = np.empty(num_ctx * total_m, dtype=np.uint8)
    packed = np.empty(num_ctx * total_m, dtype=np.uint64)
    slot = np.arange(total_m, dtype=np.int64)
    symbols = np.arange(256, dtype=np.int64)
    for c in range(num_ctx):
        s = np.repeat(symbols, freq[c])  # the symbol of every slot of this context
        lo = c * total_m
        sym[lo : lo + total_m] = s
        packed[lo : lo + total_m] = (freq[c][s] << 16) | (slot - cum[c][s])
    return sym, packed


def decode_stream(stream: bytes, ctx: np.ndarray, freq: np.ndarray, prob_bits: int, log2_lanes: int) -> np.ndarray:
    """Inverse of `encode_stream`: uint8 symbols [len(ctx)]; raises RansError on inconsistent input."""
    lanes, n = 1 << log2_lanes, ctx.size
    if len(stream) < 4 * lanes or (len(stream) - 4 * lanes) % 2:
        raise RansError("rANS stream is truncated")
    x = np.frombuffer(stream, dtype="<u4", count=lanes).astype(np.uint64)
    words = np.frombuffer(stream, dtype="<u2", offset=4 * lanes).astype(np.uint64)
    dsym, dpack = decoding_tables(freq, prob_bits)
    mask, pb, sixteen = np.uint64((1 << prob_bits) - 1), np.uint64(prob_bits), np.uint64(16)
    low = np.uint64(STATE_LOW)
    out = np.empty(n, dtype=np.uint8)
    pos = 0
    for t in range((n + lanes - 1) // lanes):
        lo, hi = t * lanes, min(n, (t + 1) * lanes)
        xs = x[: hi - lo]
        slot = xs & mask
        j = (ctx[lo:hi].astype(np.int64) << prob_bits) + slot.astype(np.int64)
        out[lo:hi] = dsym[j]
        fb = dpack[j]
        xs = (fb >> sixteen) * (xs >> pb) + (fb & np.uint64(0xFFFF))
        need = xs < low
        m = int(np.count_nonzero(need))
        if m:
            if pos + m > words.size:
                raise RansError("rANS stream is truncated")
            xs[need] = (xs[need] << sixteen) | words[pos : pos + m]
            pos += m
        x[: hi - lo] = xs
    if pos != words.size or np.any(x != low):
        raise RansError("rANS stream does not end where its model says (corrupt data)")
    return out


# ----------------------------------------------------------------------------- the code model


def fit_widths(q: np.ndarray, per_row: bool, per_col: bool) -> tuple[np.ndarray, np.ndarray]:
    """int alpha [rows or 1] and beta [cols or 0] (1/STEPS octave units) for int8 codes q [rows, cols].

    `2**((alpha_r + beta_c) / STEPS)` approximates the mean |q| of row r, column c (alternating
    geometric fit, beta centred on its median). Encoder only: the decoder reads the integers.
    """
    rows, cols = q.shape
    a = np.abs(q.astype(np.float32))
    alpha_f = np.zeros(rows if per_row else 1, dtype=np.float64)
    beta_f = np.zeros(cols, dtype=np.float64)
    for _ in range(3 if per_col else 1) if a.size else ():
        weighted = a * np.exp2(-beta_f).astype(np.float32)[None, :]
        mean_r = weighted.mean(axis=1, dtype=np.float64) if per_row else np.array([weighted.mean(dtype=np.float64)])
        alpha_f = np.log2(np.maximum(mean_r, 2.0**WIDTH_FLOOR))
        if per_col:
            row_gain = np.exp2(-alpha_f).astype(np.float32)
            mean_c = (a * row_gain.reshape(-1, 1)).mean(axis=0, dtype=np.float64)
            beta_f = np.log2(np.maximum(mean_c, 2.0 ** (WIDTH_FLOOR - 4)))
            beta_f -= np.median(beta_f)
    alpha = np.clip(np.rint(alpha_f * STEPS), -128, 127).astype(np.int8)
    beta = np.clip(np.rint(beta_f * STEPS), -BETA_RANGE, BETA_RANGE).astype(np.int8) if per_col else np.zeros(0, np.int8)
    return alpha, beta


def _entropy_bits(counts: np.ndarray) -> float:
    """Total Shannon information (bits) of samples with the given counts (last axis = symbols)."""
    c = counts.astype(np.float64)
    n = c.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(c > 0, c * np.log2(np.where(c > 0, n / c, 1.0)), 0.0)
    return float(terms.sum())


def choose_widths(q: np.ndarray, allowed: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(flags, alpha, beta) for codes q [rows, cols]: the side information that pays for itself.

    Estimates, for each allowed combination of per-row (flag 1) and per-column (flag 2) widths, the
    code bits under per-tensor context tables plus the order-0 bits of the side information, and
    keeps the cheapest (ties: fewer flags). Encoder only.
    """
    sym = q.reshape(-1).view(np.uint8).astype(np.int64)
    best = None
    for f in (0, 1, 2, 3):
        if f & ~allowed:
            continue
        alpha, beta = fit_widths(q, bool(f & 1), bool(f & 2))
        w = _widths(alpha, beta, *q.shape).astype(np.int64)
        w -= w.min(initial=0)
        counts = np.bincount(w * 256 + sym, minlength=256 * (int(w.max(initial=0)) + 1)).reshape(-1, 256)
        side = [v for v, on in ((alpha, f & 1), (beta, f & 2)) if on]
        cost = _entropy_bits(counts) + sum(_entropy_bits(np.bincount(v.view(np.uint8), minlength=256)) + 8 for v in side)
        if best is None or cost < best[0]:
            best = (cost, f, alpha, beta)
    assert best is not None
    return best[1], best[2], best[3]


def _widths(alpha: np.ndarray, beta: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Width class per code [rows * cols] (int32) from the stored integers."""
    a = alpha.astype(np.int32).reshape(-1, 1)  # [rows, 1] per row, or [1, 1] for the whole tensor
    b = beta.astype(np.int32).reshape(1, -1) if beta.size else np.zeros((1, 1), np.int32)
    return np.broadcast_to(a + b, (rows, cols)).reshape(-1)


class _Model:
    """The parsed side information: per tensor bits, flags, alpha, beta; per group width range and tables."""

    def __init__(self, bits, flags, alphas, betas, groups, freq_codes):
        self.bits, self.flags, self.alphas, self.betas = bits, flags, alphas, betas
        self.groups = groups  # list of (bits, kmin, nbins), in context order
        self.freq_codes = freq_codes  # uint8 [C, 256] log-count codes

    def contexts(self, shapes: Sequence[tuple[int, int]]) -> np.ndarray:
        """Context id of every code, tensors concatenated in order (uint16 [N])."""
        base, rng = {}, {}
        offset = 0
        for b, kmin, nbins in self.groups:
            base[b], rng[b] = offset, (kmin, nbins)
            offset += nbins
        total = sum(r * c for r, c in shapes)
        ctx = np.empty(total, dtype=np.uint16)
        pos = 0
        for (rows, cols), b, alpha, beta in zip(shapes, self.bits, self.alphas, self.betas):
            n = rows * cols
            if n == 0:
                continue
            if b not in base:
                raise RansError(f"no tables for {b}-bit codes")
            kmin, nbins = rng[b]
            w = _widths(alpha, beta, rows, cols)
            ctx[pos : pos + n] = base[b] + np.clip(w - kmin, 0, nbins - 1)
            pos += n
        return ctx

    def to_bytes(self) -> bytes:
        out = [struct.pack("<BB", MODEL_VERSION, STEPS)]
        out.append(np.asarray(self.bits, dtype=np.uint8).tobytes())
        out.append(np.asarray(self.flags, dtype=np.uint8).tobytes())
        out.extend(a.astype(np.int8).tobytes() for a in self.alphas)
        out.extend(b.astype(np.int8).tobytes() for b in self.betas)
        out.append(struct.pack("<B", len(self.groups)))
        ctx = 0
        for b, kmin, nbins in self.groups:
            out.append(struct.pack("<BhH", b, kmin, nbins))
            for _ in range(nbins):
                row = self.freq_codes[ctx]
                nz = np.flatnonzero(row)
                lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
                out.append(struct.pack("<BH", lo, hi - lo))
                out.append(row[lo:hi].tobytes())
                ctx += 1
        return b"".join(out)

    @classmethod
    def from_bytes(cls, raw: bytes, shapes: Sequence[tuple[int, int]]) -> _Model:
        try:
            return cls._parse(memoryview(raw), shapes)
        except (struct.error, ValueError, IndexError) as e:
            raise RansError(f"rANS model is truncated or malformed ({e})") from None

    @classmethod
    def _parse(cls, raw: memoryview, shapes: Sequence[tuple[int, int]]) -> _Model:
        version, steps = struct.unpack_from("<BB", raw, 0)
        if version != MODEL_VERSION or steps != STEPS:
            raise RansError(f"rANS model version {version} (steps {steps}) is not supported")
        pos, k = 2, len(shapes)

        def take(nbytes: int, dtype) -> np.ndarray:
            nonlocal pos
            if pos + nbytes > len(raw):
                raise RansError("rANS model is truncated")
            a = np.frombuffer(raw, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=pos)
            pos += nbytes
            return a

        bits = take(k, np.uint8).tolist()
        flags = take(k, np.uint8).tolist()
        alphas = [take(rows if f & 1 else 1, np.int8) for (rows, _), f in zip(shapes, flags)]
        betas = [take(cols if f & 2 else 0, np.int8) for (_, cols), f in zip(shapes, flags)]
        (num_groups,) = struct.unpack_from("<B", raw, pos)
        pos += 1
        total_bins = 0
        groups, rows_out = [], []
        for _ in range(num_groups):
            b, kmin, nbins = struct.unpack_from("<BhH", raw, pos)
            pos += 5
            total_bins += nbins
            if total_bins > MAX_CONTEXTS or not 1 <= b <= 8:
                raise RansError("rANS model is malformed (too many contexts)")
            groups.append((b, kmin, nbins))
            for _ in range(nbins):
                lo, n = struct.unpack_from("<BH", raw, pos)
                pos += 3
                if lo + n > 256:
                    raise RansError("rANS table is malformed")
                row = np.zeros(256, dtype=np.uint8)
                row[lo : lo + n] = take(n, np.uint8)
                rows_out.append(row)
        if pos != len(raw):
            raise RansError("rANS model has stray bytes")
        freq_codes = np.stack(rows_out) if rows_out else np.zeros((0, 256), np.uint8)
        return cls(bits, flags, alphas, betas, groups, freq_codes)


def _as_symbols(q: np.ndarray) -> np.ndarray:
    """uint8 symbols q + 128 of int8 codes (flattened)."""
    return (q.reshape(-1).view(np.uint8) ^ np.uint8(0x80)).astype(np.uint8)


def encode_codes(codes: Sequence[np.ndarray], prob_bits: int = PROB_BITS, per_row: bool = True,
                 per_col: bool = True) -> tuple[bytes, bytes, int]:
    """Entropy-code int8 tensors (any shapes). Returns (model bytes, stream bytes, log2 lanes).

    `per_row` / `per_col` switch the row and column widths off (for measurements); the decoder reads
    the choice from the model bytes.
    """
    from pgolf.pack.layouts import code_bits

    shapes = [matrix_shape(q.shape) for q in codes]
    bits, flags, alphas, betas = [], [], [], []
    for q, (rows, cols) in zip(codes, shapes):
        q2 = np.ascontiguousarray(q, dtype=np.int8).reshape(rows, cols)
        allowed = (1 if per_row and cols >= MIN_ROW else 0) | (2 if per_col and rows >= MIN_COL and cols > 1 else 0)
        f, alpha, beta = choose_widths(q2, allowed)
        bits.append(code_bits(q2))
        flags.append(f)
        alphas.append(alpha)
        betas.append(beta)
    # one group per code width, each spanning the width classes its tensors use
    groups = []
    for b in sorted(set(bits)):
        ws = [_widths(a, be, r, c) for (r, c), bb, a, be in zip(shapes, bits, alphas, betas) if bb == b and r * c]
        lo = min((int(w.min()) for w in ws), default=0)
        hi = max((int(w.max()) for w in ws), default=0)
        groups.append((b, lo, hi - lo + 1))
    model = _Model(bits, flags, alphas, betas, groups, np.zeros((0, 256), np.uint8))
    ctx = model.contexts(shapes)
    sym = np.concatenate([_as_symbols(np.asarray(q)) for q in codes]) if codes else np.zeros(0, np.uint8)
    num_ctx = sum(g[2] for g in groups)
    counts = np.bincount(ctx.astype(np.int64) * 256 + sym, minlength=num_ctx * 256).reshape(num_ctx, 256)
    model.freq_codes = log_count_codes(counts)
    freq = normalize_counts(expand_log_counts(model.freq_codes), prob_bits)
    log2_lanes = lanes_for(sym.size)
    stream = encode_stream(sym, ctx, freq, prob_bits, log2_lanes)
    return model.to_bytes(), stream, log2_lanes


def decode_codes(model_bytes: bytes, stream: bytes, shapes: Sequence[Sequence[int]], prob_bits: int,
                 log2_lanes: int, *, max_symbols: int = MAX_SYMBOLS) -> list[np.ndarray]:
    """Inverse of `encode_codes`: int8 arrays of the given shapes; RansError on inconsistent input.

    The symbol count the shapes declare must be at most `max_symbols`, and the decoding tables at
    most MAX_TABLE_SLOTS, both checked before anything of that size is allocated.
    """
    if not 1 <= prob_bits <= 15 or not 0 <= log2_lanes <= 20:
        raise RansError(f"unsupported rANS parameters (prob_bits {prob_bits}, log2 lanes {log2_lanes})")
    if any(int(d) < 0 for s in shapes for d in s):
        raise RansError("a code tensor has a negative dimension")
    total = sum(math.prod(int(d) for d in s) for s in shapes)  # Python ints: no overflow to a small count
    if total > max_symbols:
        raise RansError(f"the shapes declare {total:,} codes, more than the {max_symbols:,} allowed")
    mshapes = [matrix_shape(s) for s in shapes]
    model = _Model.from_bytes(model_bytes, mshapes)
    num_ctx = sum(g[2] for g in model.groups)
    if model.freq_codes.shape[0] != num_ctx:
        raise RansError("rANS model tables do not match its groups")
    if num_ctx << prob_bits > MAX_TABLE_SLOTS:
        raise RansError(f"rANS model declares {num_ctx} contexts of 2**{prob_bits} slots, more than the "
                        f"{MAX_TABLE_SLOTS:,} table slots allowed")
    ctx = model.contexts(mshapes)
    freq = normalize_counts(expand_log_counts(model.freq_codes), prob_bits)
    sym = decode_stream(stream, ctx, freq, prob_bits, log2_lanes)
    codes = (sym ^ np.uint8(0x80)).view(np.int8)
    out, pos = [], 0
    for shape, (rows, cols) in zip(shapes, mshapes):
        out.append(codes[pos : pos + rows * cols].reshape(tuple(shape)))
        pos += rows * cols
    return out
