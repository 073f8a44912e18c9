"""LaProp (Ziyin et al. 2020): the optimiser of the newest official DreamerV3.

Each step divides the gradient by the root of an EMA of its square (bias-corrected, with
`eps` outside the root) and only then takes the momentum of the result: the order is the
reverse of Adam's, so the momentum averages already-normalised updates. The learning rate
ramps linearly from 0 over `warmup` updates, as the official optax chain
(`scale_by_rms` -> `scale_by_momentum` -> linear warm-up schedule).

`capturable`: the step count is a device tensor and every step-dependent factor is computed
from it on the device, so a step captured in a CUDA graph replays with the right bias
corrections and warm-up; otherwise the count is a Python int (no device work for scalars).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class LaProp(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Tensor], lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-20, warmup: int = 0, capturable: bool = False) -> None:
        if lr < 0 or eps < 0 or warmup < 0:
            raise ValueError(f"LaProp needs lr, eps and warmup >= 0, got lr={lr}, eps={eps}, warmup={warmup}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "warmup": warmup, "capturable": capturable})

    @torch.no_grad()
    def step(self, closure=None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            capturable = group.get("capturable", False)
            for p, state in zip(params, states):
                if not state:
                    state["nu"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["mu"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step"] = 0
                # a checkpoint of the other kind of count converts (once, at the first step after loading)
                if capturable and not isinstance(state["step"], Tensor):
                    state["step"] = torch.tensor(float(state["step"]), device=p.device)
                elif not capturable and isinstance(state["step"], Tensor):
                    state["step"] = int(state["step"].item())
            grads = [p.grad for p in params]
            nus = [s["nu"] for s in states]
            mus = [s["mu"] for s in states]
            torch._foreach_mul_(nus, beta2)
            torch._foreach_addcmul_(nus, grads, grads, value=1 - beta2)
            if capturable:
                steps = [s["step"] for s in states]
                torch._foreach_add_(steps, 1.0)
                step = steps[0]
                count = step - 1.0
                # u = g / (sqrt(nu / (1 - beta2^t)) + eps)
                denom = torch._foreach_sqrt(torch._foreach_div(nus, 1 - torch.pow(beta2, step)))
                ramp = torch.clamp(count / group["warmup"], max=1.0) if group["warmup"] else 1.0
                rate = -group["lr"] * ramp / (1 - torch.pow(beta1, step))
            else:
                count = states[0]["step"]
                step = count + 1
                for state in states:
                    state["step"] = step  # a Python int: the schedule and bias corrections need no device sync
                denom = torch._foreach_sqrt(torch._foreach_div(nus, 1 - beta2**step))
                # optax's linear schedule from 0 is evaluated at the update count before this step
                ramp = min(1.0, count / group["warmup"]) if group["warmup"] else 1.0
                rate = -group["lr"] * ramp / (1 - beta1**step)
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(grads, denom)
            torch._foreach_mul_(mus, beta1)
            torch._foreach_add_(mus, updates, alpha=1 - beta1)
            if capturable:
                torch._foreach_add_(params, torch._foreach_mul(mus, rate))
            else:
                torch._foreach_add_(params, mus, alpha=rate)
