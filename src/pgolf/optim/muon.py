"""Muon: momentum, then orthogonalize each matrix update with a Newton-Schulz iteration (pure, CPU/GPU).

For a weight W [rows, cols] with gradient G, momentum mu and buffer B (techniques.md §3.4):

    B <- mu B + G;   U = G + mu B (Nesterov) or B
    eq_r (MuonEq-R, PR #1217 / #1406 lineage): each row of U divided by its L2 norm (clamped at 1e-7)
    X = NS(U): X <- U / (s ||U||_F + eps), then per iteration X <- a X + (b A + c A^2) X with A = X X^T
    W <- W (1 - lr wd)                      decoupled weight decay, lr = the group's scheduled lr
    W <- W - lr sqrt(max(1, rows / cols)) X

Coefficients: the baseline's quintic (a, b, c) = (3.4445, -4.7750, 2.0315) for every iteration, or
the Polar Express per-iteration minimax coefficients (Amsel, Persson, Musco, Gower 2025, "The Polar
Express: Optimal Matrix Sign Methods and Their Application to the Muon Algorithm",
arXiv:2505.16932; the 5-step table published with modded-nanogpt, used in parameter-golf from
PR #1344), computed for a 2% safety factor, so X is normalized by 1.02 ||U||_F there. PR #1344's
port, and every record after it up to PR #2135, normalizes by ||U||_F + eps alone:
"polar_express_pr1344" is that form. Iterations beyond the table reuse its last tuple.

The iteration runs in bf16 on GPU (as the records do) and in fp32 on CPU: CPU bf16 matmuls are slow
without AMX, and their rounding depends on which kernel the CPU gets, so fp32 keeps CPU runs
bit-reproducible across machines. `ns_dtype` overrides the choice.

Under torch.distributed (gradients already averaged by DDP), every rank updates every momentum
buffer (cheap, and it keeps the full optimizer state on every rank for checkpoints), but runs the
Newton-Schulz iteration only for matrices i with i % world_size == rank; one all-reduce (SUM) of a
flat buffer of updates, zero elsewhere, gives every rank every update, exactly (as the baseline).
ParallelMuon (parallel_muon.py) applies the same update with sharded state and without DDP.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

BASELINE_COEFFICIENTS = ((3.4445, -4.7750, 2.0315),)

# Polar Express, 5 iterations, safety factor 2e-2 (arXiv:2505.16932; PR #1344).
POLAR_EXPRESS_COEFFICIENTS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)

# name -> (per-iteration coefficients, Frobenius-norm safety factor)
NS_COEFFICIENTS: dict[str, tuple[tuple[tuple[float, float, float], ...], float]] = {
    "baseline": (BASELINE_COEFFICIENTS, 1.0),
    "polar_express": (POLAR_EXPRESS_COEFFICIENTS, 1.02),
    "polar_express_pr1344": (POLAR_EXPRESS_COEFFICIENTS, 1.0),
}
# Coefficient sets whose normalization is X / (||X||_F + eps), as the records' ports write it (PR #1344
# through #2135), rather than X / max(||X||_F, eps) (torch.optim.Muon, pgolf's other sets).
NS_EPS_ADDED = frozenset({"polar_express_pr1344"})
MUON_VARIANTS = ("standard", "eq_r")


def newton_schulz(G: Tensor, steps: int = 5, coefficients: str = "baseline", eps: float = 1e-7,
                  dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximate the orthogonal polar factor of G [rows, cols]; returns `dtype`, G's shape.

    The same operations as torch.optim.Muon's iteration (addmm), so in bf16 with the baseline
    coefficients the two agree bit for bit.
    """
    table, safety = NS_COEFFICIENTS[coefficients]
    X = G.to(dtype)
    transposed = G.size(0) > G.size(1)
    if transposed:  # iterate on the short side: A = X X^T is min(rows, cols) square
        X = X.T
    norm = X.norm()
    if coefficients in NS_EPS_ADDED:
        X = X / (norm + eps)
    else:
        X = X / (norm * safety if safety != 1.0 else norm).clamp(min=eps)
    for i in range(steps):
        a, b, c = table[min(i, len(table) - 1)]
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)  # b A + c A^2
        X = torch.addmm(X, B, X, beta=a)  # a X + B X
    return X.T if transposed else X


def default_ns_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


# The pieces Muon and ParallelMuon (parallel_muon.py) share, so the two apply one update rule.

def muon_defaults(lr: float, momentum: float, nesterov: bool, weight_decay: float, ns_steps: int,
                  ns_coefficients: str, variant: str, eps: float) -> dict:
    """The param-group defaults of a Muon optimizer, after checking the names of the options."""
    if ns_coefficients not in NS_COEFFICIENTS:
        raise ValueError(f"unknown Newton-Schulz coefficients {ns_coefficients!r}; one of {sorted(NS_COEFFICIENTS)}")
    if variant not in MUON_VARIANTS:
        raise ValueError(f"unknown Muon variant {variant!r}; one of {MUON_VARIANTS}")
    return dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
                ns_coefficients=ns_coefficients, variant=variant, eps=eps)


def check_matrices(param_groups: list[dict], name: str = "Muon") -> None:
    for group in param_groups:
        for p in group["params"]:
            if p.ndim != 2:
                raise ValueError(f"{name} only takes 2-D parameters, got shape {tuple(p.shape)}")


def orthogonalized(g: Tensor, buf: Tensor, group: dict, dtype: torch.dtype) -> Tensor:
    """The update of one matrix from its gradient `g` and its (already updated) momentum buffer."""
    u = g.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
    if group["variant"] == "eq_r":  # MuonEq-R: equalize row norms before orthogonalizing (PR #1217)
        u = u / u.norm(dim=1, keepdim=True).clamp(min=1e-7)
    return newton_schulz(u, group["ns_steps"], group["ns_coefficients"], group["eps"], dtype)


def apply_update(p: Tensor, u: Tensor, lr: float, wd: float) -> None:
    """W <- W (1 - lr wd) - lr sqrt(max(1, rows / cols)) u, in place (u has p's shape)."""
    if wd != 0.0:
        p.mul_(1.0 - lr * wd)
    # Scale so the update's RMS does not shrink for tall matrices (Muon reference implementations).
    p.add_(u, alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters; one group option set per param group (lr, momentum, weight_decay, ...).

    `lr` is the scheduled learning rate (the training loop rewrites it each step from `base_lr`),
    `weight_decay` is decoupled and multiplied by it, as in the records (techniques.md §4.6).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float, momentum: float = 0.95,
                 nesterov: bool = True, weight_decay: float = 0.0, ns_steps: int = 5,
                 ns_coefficients: str = "baseline", variant: str = "standard", ns_dtype: torch.dtype | None = None,
                 eps: float = 1e-7):
        super().__init__(params, muon_defaults(lr, momentum, nesterov, weight_decay, ns_steps, ns_coefficients,
                                               variant, eps))
        self.ns_dtype = ns_dtype
        check_matrices(self.param_groups, type(self).__name__)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        world = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            updates = self._updates(group, params, rank, world)
            if distributed:
                flat = torch.cat([u.reshape(-1) for u in updates])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                updates = list(flat.split([p.numel() for p in params]))
            for p, u in zip(params, updates):
                apply_update(p, u.view_as(p), group["lr"], group["weight_decay"])
        return loss

    def _updates(self, group: dict, params: list[Tensor], rank: int, world: int) -> list[Tensor]:
        """Orthogonalized updates; zeros for matrices another rank handles (exact under the SUM)."""
        mu = group["momentum"]
        out = []
        dtype = self.ns_dtype or default_ns_dtype(params[0].device)
        for i, p in enumerate(params):
            g = p.grad
            assert g is not None  # step() passes only the parameters that have a gradient
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(g)
            buf = state["momentum_buffer"]
            buf.mul_(mu).add_(g)
            if i % world != rank:
                out.append(torch.zeros(p.shape, device=p.device, dtype=dtype))
                continue
            out.append(orthogonalized(g, buf, group, dtype))
        return out
