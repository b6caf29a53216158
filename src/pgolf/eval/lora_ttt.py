"""PR #2135's phased score-first LoRA TTT (`ttt.method = "phased_lora"`), as an adapter of the score-first loop.

The evaluation runs per document (`eval.doc_windows`), each document cut into small chunks
(`chunk_tokens`, #2135: 48), each chunk scored by one window of the `seq_len` tokens that end at its end
(`eval.chunk_windows`, #2135's `_compute_chunk_window`). After a chunk is scored and committed, and
unless it is its document's last, one AdamW step trains the LoRA factors on that chunk's targets (the
loss is the mean NLL over the chunk, read from the same window; the tilt never enters it).

LoRA factors (#2135's BatchedTTTLoRA, one document at a time here): per virtual layer (a looped layer
gets one set per pass), y += (x A^T) B^T * alpha / rank with A ~ U(+-1/sqrt(in)) and B = 0, on
- "q", "k", "v": the query, key and value projections, reading the attention's normed input;
- "o": the attention output (after its projection), reading the same normed input;
- "mlp": the MLP output, reading the MLP's normed input;
- "head": the logits before the softcap, reading the final norm's output.
They are attached with forward hooks (the model's modules are never replaced) and removed at the end.

At each new document the B factors and the optimizer's moments are zeroed; with `warm_start_a` the A
factors carry over from the previous document (#2135 TTT_WARM_START_A=1), so documents are not
independent: the loop records the reset as partial. After the first `prefix_docs` documents (in
`num_phases` phases) have been scored, a global pass trains the base model by SGD on every scored
prefix document (#2135's `train_val_ttt_global_sgd_distributed`: cosine over chunks of
`global_chunk_tokens`, the last not trained on, sequences of `seq_len`, grad clip), then fresh LoRA
factors start. Every read goes through the `CommittedView`, so every step's spans are in the ledger.

Differences from the record (its eval batches 64 documents of similar length and runs them in order of
length; pgolf runs documents one by one in stream order): the prefix is the stream's first documents,
not the record's first length-sorted batches; the A factors carry from the previous document of the
stream, not from the same batch slot; the global pass reads the prefix as one stream (the record
concatenates documents with their closing BOS, so each inner BOS appears twice) in rows of `seq_len`
(the record's rows are cut at BOS and at 2560 tokens from a document start; a model with
`attn_doc_mask` attends within documents either way); phase boundaries come from `prefix_docs` alone.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from pgolf.errors import ConfigError
from pgolf.eval.adapters import ChunkInfo
from pgolf.eval.config import TTTConfig
from pgolf.eval.dist import World
from pgolf.eval.scoring import autocast_for, token_nll_of
from pgolf.eval.view import CommittedView


class LoRAFactor(nn.Module):
    """One low-rank term x -> (x A^T) B^T * alpha / rank; B starts at zero, so it adds nothing at first."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, gen: torch.Generator,
                 device: torch.device):
        super().__init__()
        self.bound = 1.0 / math.sqrt(in_features)
        self.scale = alpha / rank
        # U(+-1/sqrt(in)) drawn as #2135 draws it (uniform_), so equal seeds give equal factors
        self.A = nn.Parameter(torch.empty(rank, in_features).uniform_(-self.bound, self.bound, generator=gen).to(device))
        self.B = nn.Parameter(torch.zeros(out_features, rank, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.A.to(x.dtype).t()) @ self.B.to(x.dtype).t() * self.scale

    @torch.no_grad()
    def reset(self, redraw_a: bool, gen: torch.Generator) -> None:
        if redraw_a:
            self.A.copy_(torch.empty(self.A.shape).uniform_(-self.bound, self.bound, generator=gen))
        self.B.zero_()


class DocumentLoRA(nn.Module):
    """The factors of `layers` for every virtual layer of a pgolf GPT (`q.{slot}`, ..., `head`), and the
    forward hooks that apply them; `enabled` switches them off without removing them."""

    def __init__(self, model: nn.Module, layers: tuple[str, ...], rank: int, alpha: float, gen: torch.Generator):
        super().__init__()
        cfg = getattr(model, "cfg", None)
        if cfg is None or not hasattr(model, "layer_order") or not hasattr(model, "head_out"):
            raise ConfigError("ttt.method = 'phased_lora' needs a pgolf GPT (its blocks, layer order and head)",
                              "use ttt.method = 'chunks' for this model")
        device = next(model.parameters()).device
        D, C, V = cfg.model_dim, cfg.kv_dim, cfg.vocab_size
        self.order = tuple(int(i) for i in cast(Any, model).layer_order())
        shapes = {"q": (D, D), "k": (D, C), "v": (D, C), "o": (D, D), "mlp": (D, D)}
        # Creation order as #2135's BatchedTTTLoRA: head, then q, v, k, mlp, o over the slots.
        self.head = LoRAFactor(D, V, rank, alpha, gen, device) if "head" in layers else None
        self.slots = nn.ModuleDict()
        for kind in ("q", "v", "k", "mlp", "o"):
            if kind in layers:
                self.slots[kind] = nn.ModuleList(LoRAFactor(*shapes[kind], rank, alpha, gen, device)
                                                 for _ in self.order)
        self.enabled = True
        self._slot = 0
        self._calls: dict[int, int] = {}
        self._positions = {i: [p for p, layer in enumerate(self.order) if layer == i] for i in set(self.order)}
        self._hooks: list = []
        self._attach(model)

    def factors(self) -> list[tuple[str, LoRAFactor]]:
        """(name, factor) in #2135's order: head, then q, v, k, mlp, o by slot."""
        out = [("head", self.head)] if self.head is not None else []
        out += [(f"{kind}.{slot}", cast(LoRAFactor, f)) for kind, mods in self.slots.items()
                for slot, f in enumerate(cast(nn.ModuleList, mods))]
        return out

    def _attach(self, module: nn.Module) -> None:
        model: Any = module  # a pgolf GPT (checked in __init__)
        hook = self._hooks.append
        hook(model.tok_emb.register_forward_pre_hook(self._new_forward))  # once per forward, before block 0
        for i in set(self.order):
            block = model.blocks[i]
            hook(block.attn.register_forward_pre_hook(lambda m, a, i=i: self._enter(i)))
            for kind, module in (("q", block.attn.c_q), ("k", block.attn.c_k), ("v", block.attn.c_v),
                                 ("o", block.attn), ("mlp", block.mlp)):
                if kind in self.slots:
                    hook(module.register_forward_hook(lambda m, a, out, kind=kind: self._add(kind, a[0], out)))
        if self.head is not None:
            head = self.head
            hook(model.head_out.register_forward_hook(
                lambda m, a, out: out + head(a[0]).float() if self.enabled else out))

    def _new_forward(self, module: nn.Module, args: tuple) -> None:
        self._calls = {}

    def _enter(self, layer: int) -> None:
        """The attention of physical `layer` starts: its call count gives the virtual layer (slot)."""
        count = self._calls.get(layer, 0)
        self._calls[layer] = count + 1
        self._slot = self._positions[layer][count]

    def _add(self, kind: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return out
        return out + cast(nn.ModuleList, self.slots[kind])[self._slot](x).to(out.dtype)

    def reset(self, redraw_a: bool, gen: torch.Generator) -> None:
        for _, f in self.factors():
            f.reset(redraw_a, gen)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


class PhasedLoRAAdapter:
    """#2135's phased score-first LoRA TTT (see the module docstring); an `Adapter` of the score-first loop."""

    adapts_at_document_end = True  # the loop calls `adapt` after a document's last chunk (the phase ends there)

    def __init__(self, model: nn.Module, cfg: TTTConfig, seq_len: int, *, world: World = World(),
                 autocast: bool = True):
        self.model = model
        self.cfg = cfg
        self.seq_len = seq_len
        self.world = world
        self.autocast = autocast
        self.device = next(model.parameters()).device
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self._saved_requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        self._base = {n: p.detach().clone() for n, p in model.named_parameters()}  # restored by close()
        for p in model.parameters():
            p.requires_grad_(False)
        self.lora = self._new_lora()
        self.optimizer = self._make_optimizer()
        self.docs_done = 0
        prefix = cfg.prefix_docs
        self.boundaries = [prefix * (i + 1) // cfg.num_phases for i in range(cfg.num_phases)] if prefix else []
        self.phase = 0
        self._fresh = False
        self.forward = token_nll_of(model)

    def _new_lora(self) -> DocumentLoRA:
        old = getattr(self, "lora", None)
        if old is not None:
            old.remove()
        return DocumentLoRA(self.model, tuple(self.cfg.lora_layers), self.cfg.lora_rank, self.cfg.lora_alpha, self.gen)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = list(self.lora.parameters())
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(float(cfg.momentum), float(cfg.beta2)), eps=cfg.adam_eps,
                                 weight_decay=cfg.weight_decay)

    # ------------------------------------------------------------------ the Adapter protocol

    def state(self) -> dict[str, torch.Tensor]:
        return dict(self.lora.named_parameters())

    def adapt(self, view: CommittedView, chunk: ChunkInfo) -> None:
        if chunk.segment_end:
            self.docs_done += 1
            if self.phase < len(self.boundaries) and self.docs_done >= self.boundaries[self.phase]:
                self.global_pass(view, chunk.end)
            return
        self.lora_step(view, chunk)

    def lora_step(self, view: CommittedView, chunk: ChunkInfo) -> None:
        """One step on the chunk just scored: the mean NLL of its targets, from the window that scored it."""
        start = max(chunk.segment[0], chunk.end - self.seq_len)
        x, y = view.take([(start, chunk.end)], shard=False)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad(), autocast_for(self.device, self.autocast):
            nll = self.forward(x, y)
        nll[:, chunk.start - start :].float().mean().backward()
        self.optimizer.step()
        view.step(epoch=0, lr=self.cfg.lr)

    def global_pass(self, view: CommittedView, end: int) -> None:
        """SGD on the base model over the scored positions [0, end) (#2135's global TTT), then fresh factors."""
        cfg, T, model = self.cfg, self.seq_len, self.model
        self.lora.enabled = False
        if cfg.global_params == "caps":
            params = [p for p in (getattr(model, "softcap_pos", None), getattr(model, "softcap_neg", None))
                      if p is not None]
            if not params:
                raise ConfigError("ttt.global_params = 'caps' but the model has no AsymLogit caps",
                                  "set model.asym_softcap = true, or ttt.global_params = 'all'")
        else:
            params = list(model.parameters())
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.SGD(params, lr=cfg.global_lr, momentum=cfg.global_momentum)
        num_chunks = (end + cfg.global_chunk_tokens - 1) // cfg.global_chunk_tokens
        try:
            for ci in range(num_chunks - 1):  # the last chunk is not trained on (as #2135)
                c0 = ci * cfg.global_chunk_tokens
                seqs = (min(c0 + cfg.global_chunk_tokens, end) - c0) // T
                if seqs <= 0 or cfg.global_epochs <= 0:
                    continue
                lr = cfg.global_lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(num_chunks - 1, 1)))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                for epoch in range(cfg.global_epochs):
                    for b in range(0, seqs, cfg.global_batch_seqs):
                        spans = [(c0 + i * T, c0 + (i + 1) * T) for i in range(b, min(b + cfg.global_batch_seqs, seqs))]
                        x, y = view.take(spans)
                        self._global_step(optimizer, params, x, y, len(spans) * T)
                        view.step(epoch=epoch, lr=lr)
        finally:
            for p in params:
                p.requires_grad_(False)
                p.grad = None
        self.phase += 1
        self._fresh = True  # fresh factors at the next document's reset (#2135 draws them right after the pass)

    def _global_step(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], x: torch.Tensor,
                     y: torch.Tensor, num_targets: int) -> None:
        optimizer.zero_grad(set_to_none=False)
        if x.shape[0]:
            with torch.enable_grad(), autocast_for(self.device, self.autocast):
                if self.cfg.global_params == "caps":  # the learned caps enter only the evaluation logits
                    nll_sum = self.forward(x, y).float().sum()
                else:  # #2135's global pass calls its training forward: the fixed softcap
                    nll_sum = self.model.loss(x, y).float() * x.numel()  # type: ignore[operator]
            (nll_sum / num_targets).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if self.world.size > 1:
            flat = self.world.all_reduce_sum_(torch.cat([g.reshape(-1) for g in grads]))
            grads = [g.view_as(p) for g, p in zip(flat.split([p.numel() for p in params]), params)]
        for p, g in zip(params, grads):
            p.grad = g
        if self.cfg.global_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.global_grad_clip)
        optimizer.step()

    def reset(self) -> None:
        """A new document: B factors and the optimizer's moments to zero, A kept with warm_start_a; after a
        global pass, fresh factors."""
        if self._fresh:
            self.lora, self._fresh = self._new_lora(), False
        else:
            self.lora.reset(not self.cfg.warm_start_a, self.gen)
        self.optimizer = self._make_optimizer()

    def warmup(self, vocab_size: int) -> None:
        """Nothing is compiled on this path (eval.compile applies to scoring only)."""

    @torch.no_grad()
    def close(self) -> None:
        """Leave the model as it was given: the base weights the global pass moved restored, hooks removed."""
        self.lora.remove()
        for name, p in self.model.named_parameters():
            p.copy_(self._base[name])
            p.requires_grad_(self._saved_requires_grad.get(name, True))
            p.grad = None
