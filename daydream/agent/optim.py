"""Adam or LaProp with gradient clipping by global norm or adaptive gradient clipping (AGC),
and an optional linear learning-rate warm-up.

Clipping is done without host synchronisation: the scale factor stays a tensor on
the device, so the update never stalls the GPU. `capturable` optimisers can be replayed
from a CUDA graph (`daydream.agent.update_graph`): their step counts and bias corrections
live on the device, and the warm-up is applied by the owner (`schedule`) outside the graph.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from daydream.agent.laprop import LaProp


class ClippedAdam:
    """`mode` norm clips the global gradient norm to `clip`; agc clips each parameter's
    gradient norm to `agc` times the parameter's norm (at least 1e-3), as the official
    `clip_by_agc` (ratio 0.3).

    `capturable`: the step can be captured in a CUDA graph and replayed. Adam on CUDA keeps its
    step count on the device (and, with a warm-up, its learning rate as a device tensor), LaProp
    its step count and bias corrections; `step` no longer applies the warm-up: the owner calls
    `schedule()` before every step, outside the graph (a replay does not run Python).
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, eps: float, clip: float, mode: str,
                 agc: float = 0.3, kind: str = "adam", warmup: int = 0, capturable: bool = False) -> None:
        self.params = [p for p in params if p.requires_grad]
        if mode not in ("norm", "agc"):
            raise ValueError(f"unknown clip mode '{mode}'; use norm or agc")
        self.clip, self.mode, self.agc = clip, mode, agc
        self.capturable = capturable
        cuda = bool(self.params) and self.params[0].is_cuda
        self.opt: torch.optim.Optimizer
        if kind == "laprop":
            self.opt = LaProp(self.params, lr=lr, eps=eps, warmup=warmup, capturable=capturable)
            self.warmup = 0  # LaProp ramps its own rate, as the official schedule
        elif kind == "adam":
            # torch's capturable Adam runs on CUDA only; on a CPU the step is replayed eagerly
            # (tests of the graph's bookkeeping), where Python-side counts are read at every step
            on_device = capturable and cuda
            rate: float | Tensor = torch.tensor(float(lr), device=self.params[0].device) if on_device and warmup else lr
            self.opt = torch.optim.Adam(self.params, lr=rate, eps=eps, fused=cuda, foreach=None if cuda else True,
                                        capturable=on_device)
            self.warmup = warmup
        else:
            raise ValueError(f"unknown optimiser '{kind}'; use adam or laprop")
        self.lr, self.steps = lr, 0

    def step(self, loss: Tensor, retain_graph: bool = False) -> Tensor:
        """Backprop `loss` into these parameters only, clip, step; returns the pre-clip grad norm.
        `retain_graph` keeps the graph for a later loss that shares part of it."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True, retain_graph=retain_graph)
        # autograd.grad does not give grads the parameter's strides (cuDNN returns conv weight
        # grads channels-last when the activations are), and fused Adam needs them equal.
        grads = [torch.zeros_like(p) if g is None else g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)
                 for p, g in zip(self.params, grads)]
        norm = self.clip_(grads)
        for p, g in zip(self.params, grads):
            p.grad = g
        if not self.capturable:
            self.schedule()
        self.opt.step()
        for p in self.params:
            p.grad = None
        return norm.detach()

    def schedule(self) -> None:
        """Set the coming step's learning rate (the linear warm-up) and count the step. A Python-side
        schedule: no device sync; a device-tensor rate is filled in place, so a graph replays with it."""
        if self.warmup and self.steps <= self.warmup:
            rate = self.lr * min(1.0, self.steps / self.warmup)
            for group in self.opt.param_groups:
                if isinstance(group["lr"], Tensor):
                    group["lr"].fill_(rate)
                else:
                    group["lr"] = rate
        self.steps += 1

    def clip_(self, grads: list[Tensor]) -> Tensor:
        """Clip `grads` (one per parameter) in place; returns their global norm before clipping."""
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if self.mode == "norm":
            scale = torch.clamp(self.clip / (norm + 1e-6), max=1.0)
            torch._foreach_mul_(grads, scale)
        else:
            gnorms = torch._foreach_norm(grads)
            pnorms = torch._foreach_norm([p.detach() for p in self.params])
            for g, gn, pn in zip(grads, gnorms, pnorms):
                limit = self.agc * torch.clamp(pn, min=1e-3)
                g.mul_(torch.clamp(limit / (gn + 1e-6), max=1.0))
        return norm

    def state_dict(self) -> dict:
        return {**self.opt.state_dict(), "daydream_steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.steps = int(state.pop("daydream_steps", 0))
        # the loaded groups bring their saved rates: keep this optimiser's kind of rate (a device
        # tensor where a captured graph reads it, a float elsewhere), whichever kind was saved
        kinds = [isinstance(group["lr"], Tensor) for group in self.opt.param_groups]
        self.opt.load_state_dict(state)
        for group, tensor in zip(self.opt.param_groups, kinds):
            rate = group["lr"]
            if tensor and not isinstance(rate, Tensor):
                group["lr"] = torch.tensor(float(rate), device=self.params[0].device)
            elif not tensor and isinstance(rate, Tensor):
                group["lr"] = float(rate)
