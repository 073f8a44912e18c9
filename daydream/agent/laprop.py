"""LaProp (Ziyin et al. 2020): the optimiser of the newest official DreamerV3.

Each step divides the gradient by the root of an EMA of its square (bias-corrected, with
`eps` outside the root) and only then takes the momentum of the result: the order is the
reverse of Adam's, so the momentum averages already-normalised updates. The learning rate
ramps linearly from 0 over `warmup` updates, as the official optax chain
(`scale_by_rms` -> `scale_by_momentum` -> linear warm-up schedule).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class LaProp(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Tensor], lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-20, warmup: int = 0) -> None:
        if lr < 0 or eps < 0 or warmup < 0:
            raise ValueError(f"LaProp needs lr, eps and warmup >= 0, got lr={lr}, eps={eps}, warmup={warmup}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "warmup": warmup})

    @torch.no_grad()
    def step(self, closure=None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["step"] = 0  # a Python int: the schedule and bias corrections need no device sync
                    state["nu"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["mu"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            count = states[0]["step"]
            for state in states:
                state["step"] = count + 1
            step = count + 1
            grads = [p.grad for p in params]
            nus = [s["nu"] for s in states]
            mus = [s["mu"] for s in states]
            torch._foreach_mul_(nus, beta2)
            torch._foreach_addcmul_(nus, grads, grads, value=1 - beta2)
            # u = g / (sqrt(nu / (1 - beta2^t)) + eps)
            denom = torch._foreach_sqrt(torch._foreach_div(nus, 1 - beta2**step))
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(grads, denom)
            torch._foreach_mul_(mus, beta1)
            torch._foreach_add_(mus, updates, alpha=1 - beta1)
            # optax's linear schedule from 0 is evaluated at the update count before this step
            lr = group["lr"] * (min(1.0, count / group["warmup"]) if group["warmup"] else 1.0)
            torch._foreach_add_(params, mus, alpha=-lr / (1 - beta1**step))
