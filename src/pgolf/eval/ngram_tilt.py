"""Token-only online n-gram tilt (#2135; from PR #1145, legal per PR #1514): the eval option `tilt = "ngram"`.

An online n-gram model over the scored stream proposes at most one *hint* token per position from the
strict prefix; where its confidence clears a threshold, the model's distribution is tilted towards it
and renormalized over the whole vocabulary:

    p'(a) = exp(beta * [a == h]) * p(a) / Z,    Z = 1 + q_h * (exp(beta) - 1),    q_h = p(h)
    -log p'(y) = -log p(y) - beta * [y == h] + log1p(q_h * expm1(beta))

The n-gram state (score-first): before position i is scored, the context is the last `order - 1`
tokens of the prefix; its hint is the token seen most often after that context so far (ties: the one
that first reached the top count), with confidence top_count / times the context was seen. Only after
the position is scored does the state count (context, token) and push the token. No hint exists until
the context is full or while the context was never seen (hint 0, confidence 0).

Contexts and (context, token) pairs are keyed by #2135's 64-bit hashes (`online_ngram_state.c`, its
constants below), so hash collisions merge exactly as they do there and the hints are identical to the
record's, bit for bit; `TokenNgramState` is the step-by-step statement of that state and
`token_ngram_hints` the vectorized equivalent for whole streams (sorting, no Python loop per token).
#2135 feeds its val targets (stream[1:]) and first pushes the first target once without counting
(`prefix=None` here); its word-start and within-word channels are disabled in its record run and
are not implemented here.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence

import numpy as np
import torch

from pgolf.config import check
from pgolf.eval.config import MAX_ORDER, TiltConfig  # TiltConfig lives with the eval keys (no numpy import there)

# online_ngram_state.c's hash constants: reproducing its hints needs the same keys.
_COEFFS = (36313, 27191, 51647, 81929, 131071, 196613, 262147, 393241, 524309, 655373, 786433, 917521,
           1048583, 1179653, 1310729, 1441801, 1572869, 1703941, 1835017, 1966087, 2097169, 2228243,
           2359319, 2490389, 2621471, 2752549, 2883617, 3014687, 3145757, 3276833, 3407903, 3538973)
_PAIR_MIX = 1000003
_MASK64 = (1 << 64) - 1
assert MAX_ORDER == len(_COEFFS) + 1  # the context hash has one coefficient per context slot


@dataclasses.dataclass(frozen=True)
class NgramHints:
    """Per position of a stream: the n-gram's top next token (0 when none) and its confidence (float32)."""

    token: np.ndarray  # int64[N]
    prob: np.ndarray  # float32[N]


class TokenNgramState:
    """The online n-gram, one step at a time: `predict()` for the next position, then `observe(token)`."""

    def __init__(self, order: int, prefix: Sequence[int] = ()):
        check(1 <= order <= MAX_ORDER, "ngram_tilt.order", f"must be in [1, {MAX_ORDER}]")
        self.ctx_len = order - 1
        self.ring: deque[int] = deque(maxlen=self.ctx_len)
        self.contexts: dict[int, list[int]] = {}  # key -> [total, top_count, top_token]
        self.pairs: dict[int, int] = {}
        for tok in prefix:  # pushed without counting, as #2135 seeds its state
            self.ring.append(int(tok))

    def _full(self) -> bool:
        return len(self.ring) >= self.ctx_len

    def _key(self) -> int:
        key = 0
        for j, tok in enumerate(self.ring):  # oldest first
            key ^= tok * _COEFFS[j]
        return key

    def predict(self) -> tuple[int, float]:
        entry = self.contexts.get(self._key()) if self._full() else None
        if entry is None:
            return 0, 0.0
        return entry[2], float(np.float32(entry[1]) / np.float32(entry[0]))

    def observe(self, tok: int) -> None:
        tok = int(tok)
        if self._full():
            key = self._key()
            pair = ((key * _PAIR_MIX) & _MASK64) ^ (tok * _COEFFS[self.ctx_len % len(_COEFFS)])
            count = self.pairs[pair] = self.pairs.get(pair, 0) + 1
            entry = self.contexts.get(key)
            if entry is None:
                self.contexts[key] = [1, count, tok]
            else:
                entry[0] += 1
                if count > entry[1]:
                    entry[1], entry[2] = count, tok
        if self.ctx_len:
            self.ring.append(tok)


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    starts = np.ones(sorted_keys.shape[0], dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


def token_ngram_hints(tokens: np.ndarray, order: int, prefix: Sequence[int] | np.ndarray | None = None) -> NgramHints:
    """Hints for every position of `tokens` [N] (ids < 65536): entry i comes from tokens[:i] only.

    `prefix`: tokens pushed into the context before the stream, without counting; None is #2135's
    convention, the stream's first token (it passes its val targets, stream[1:]).
    Equal to stepping `TokenNgramState` (predict, then observe) through the stream.
    """
    check(1 <= order <= MAX_ORDER, "ngram_tilt.order", f"must be in [1, {MAX_ORDER}]")
    toks = np.asarray(tokens).astype(np.int64).reshape(-1)
    if toks.size and (toks.min() < 0 or toks.max() > 0xFFFF):
        raise ValueError("n-gram tilt token ids must fit uint16")
    n, ctx_len = toks.shape[0], order - 1
    pre = toks[:1] if prefix is None else np.asarray(prefix, dtype=np.int64).reshape(-1)
    pre = pre[max(0, pre.shape[0] - ctx_len):] if ctx_len else pre[:0]
    hint_tok = np.zeros(n, dtype=np.int64)
    hint_prob = np.zeros(n, dtype=np.float32)
    first = max(ctx_len - pre.shape[0], 0)  # the first position whose context is full
    if first >= n:
        return NgramHints(hint_tok, hint_prob)

    seq = np.concatenate([pre, toks]).astype(np.uint64)
    pos = np.arange(first, n) + pre.shape[0]  # positions in `seq`
    key = np.zeros(pos.shape[0], dtype=np.uint64)
    for j in range(ctx_len):
        key ^= seq[pos - ctx_len + j] * np.uint64(_COEFFS[j])
    tok = toks[first:]
    pair = (key * np.uint64(_PAIR_MIX)) ^ (tok.astype(np.uint64) * np.uint64(_COEFFS[ctx_len % len(_COEFFS)]))
    m = pos.shape[0]
    ar = np.arange(m)

    # count of each (context, token) pair including this occurrence, in stream order
    by_pair = np.argsort(pair, kind="stable")
    starts = _group_starts(pair[by_pair])
    pair_count = np.empty(m, dtype=np.int64)
    pair_count[by_pair] = ar - np.maximum.accumulate(np.where(starts, ar, 0)) + 1

    # per context, in stream order: occurrences before this one, and the running top (count, token)
    by_ctx = np.argsort(key, kind="stable")
    starts = _group_starts(key[by_ctx])
    seen = ar - np.maximum.accumulate(np.where(starts, ar, 0))
    gid = np.cumsum(starts) - 1
    pc = pair_count[by_ctx]
    offset = gid * (m + 1)  # makes the running max restart at each context
    top_count = np.maximum.accumulate(pc + offset) - offset
    rises = starts.copy()
    rises[1:] |= pc[1:] > top_count[:-1]  # a strictly larger count takes over the top
    top_tok = tok[by_ctx][np.maximum.accumulate(np.where(rises, ar, 0))]

    hit = seen > 0  # the context was seen before: its state after the previous occurrence is the hint
    where = by_ctx[hit]
    prev = ar[hit] - 1
    hint_tok[first + where] = top_tok[prev]
    hint_prob[first + where] = top_count[prev].astype(np.float32) / seen[hit].astype(np.float32)
    return NgramHints(hint_tok, hint_prob)


def gate_hints(hints: NgramHints, cfg: TiltConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hint ids, gate, beta) per position: tilt only where the confidence reaches the threshold."""
    gate = hints.prob >= np.float32(cfg.threshold)
    return (np.where(gate, hints.token, 0).astype(np.int64), gate,
            np.where(gate, np.float32(cfg.boost), np.float32(0.0)).astype(np.float32))


def position_tilt(tokens: np.ndarray, cfg: TiltConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hint ids int64, gate bool, beta float32) [N - 1] per position of a validation stream `tokens` [N].

    Position p predicts tokens[p + 1]; its hint comes from tokens[1 .. p] only, the targets already
    scored before it (#2135's convention: the n-gram runs over the targets, tokens[1:], its first
    target pushed once without counting). Nothing at p reads tokens[p + 1] or later.
    """
    toks = np.asarray(tokens).reshape(-1)
    return gate_hints(token_ngram_hints(toks[1:], cfg.order), cfg)


def tilt_nll(nll: torch.Tensor, log_q_hint: torch.Tensor, target: torch.Tensor, hint: torch.Tensor,
             gate: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """Closed-form tilted NLL per position (float64): nll - beta [y == h] + log1p(q_h expm1(beta)) where gated."""
    beta64 = torch.as_tensor(beta, dtype=torch.float64, device=nll.device)
    q = log_q_hint.double().clamp(max=0.0).exp()
    tilted = nll.double() - beta64 * (target == hint).double() + torch.log1p(q * torch.expm1(beta64))
    return torch.where(gate, tilted, nll.double())


def tilted_log_probs(log_probs: torch.Tensor, hint: torch.Tensor, gate: torch.Tensor,
                     beta: torch.Tensor | float) -> torch.Tensor:
    """The full tilted distribution [..., V] (log-probs, float64): what `tilt_nll` reads one entry of."""
    lp = log_probs.double()
    beta64 = torch.as_tensor(beta, dtype=torch.float64, device=lp.device).expand(hint.shape)
    hint = hint.long().unsqueeze(-1)
    q = lp.gather(-1, hint).squeeze(-1).clamp(max=0.0).exp()
    log_z = torch.log1p(q * torch.expm1(beta64))
    bump = torch.zeros_like(lp).scatter_(-1, hint, beta64.unsqueeze(-1))
    return torch.where(gate.unsqueeze(-1), lp + bump - log_z.unsqueeze(-1), lp)


class TiltedScorer:
    """A probe Scorer (`pgolf.verify.probes`) that tilts a base scorer with window-local hints.

    Position t of a window scores the token after idx[:, t]; its hint comes from the n-gram state
    after idx[:, :t + 1] of that window (no prefix). The eval keeps one state over the whole val stream
    instead (`position_tilt`); the probes check the same properties (normalization, target independence).
    """

    def __init__(self, base, cfg: TiltConfig | None = None):
        self.base = base
        self.cfg = cfg or TiltConfig()

    def hints(self, idx_BT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = idx_BT.cpu().numpy()
        out = [gate_hints(token_ngram_hints(np.append(r, 0), self.cfg.order, prefix=()), self.cfg) for r in rows]
        # stream entry t + 1 comes from idx[:t + 1]; the appended 0 is never read by any hint
        return tuple(torch.from_numpy(np.stack([o[k][1:] for o in out])) for k in range(3))  # type: ignore[return-value]

    def log_probs(self, idx_BT: torch.Tensor) -> torch.Tensor:
        hint, gate, beta = self.hints(idx_BT)
        return tilted_log_probs(self.base.log_probs(idx_BT), hint, gate, beta)

    def token_nll(self, idx_BT: torch.Tensor, tgt_BT: torch.Tensor) -> torch.Tensor:
        hint, gate, beta = self.hints(idx_BT)
        log_q = self.base.log_probs(idx_BT).gather(-1, hint.unsqueeze(-1)).squeeze(-1)
        return tilt_nll(self.base.token_nll(idx_BT, tgt_BT), log_q, tgt_BT, hint, gate, beta)

    def digest(self) -> str:
        return f"{self.base.digest()}+ngram_tilt({self.cfg.order},{self.cfg.threshold},{self.cfg.boost})"
