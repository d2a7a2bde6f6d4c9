"""The residual fit's optimiser: Adam with an orthant-wise L1 rule and exact zeros.

Why its own optimiser: the residual must end *exactly* sparse, which plain Adam on ``loss +
λ·Σ|r|`` never gives (it oscillates around zero). Around each Adam step (OWL-QN's idea,
Andrew & Gao 2007; truncated gradient, Langford et al. 2009):

* the gradient gets the L1 subgradient ``λ·sign(r)`` off zero; a value *at* zero may leave only
  when its colour gradient exceeds ``λ`` (the subgradient optimality condition), by ``|g| − λ``;
* a value whose step crosses (or lands on) zero stops exactly there, and its first moment is
  cleared (otherwise momentum carries it straight back out).

On CPU in float32 the whole step is one compiled pass (``native_train.prox_adam_step``); elsewhere
it is ``torch.optim.Adam`` with the same rule around it. They agree to float32 rounding (tested).
"""

from __future__ import annotations

import torch

from rerf_codec.field import native_train


def proximal_grad(r: torch.Tensor, g: torch.Tensor, lam: float) -> torch.Tensor:
    """Orthant-wise L1 (sub)gradient: ``g + λ·sign(r)`` off zero; at zero, leave only if ``|g| > λ``."""
    at_zero = r == 0
    off = g + lam * torch.sign(r)
    leave = torch.where(g.abs() > lam, g - lam * torch.sign(g), torch.zeros_like(g))
    return torch.where(at_zero, leave, off)


class ProximalAdam:
    """Adam (betas, eps as given; no weight decay) over ``params`` with the L1 weight ``lam`` (see the module)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float], eps: float, lam: float) -> None:
        self.params = params
        self.betas, self.eps, self.lam = betas, eps, lam
        self.compiled = native_train.usable(*params) and all(p.is_contiguous() for p in params)
        self._adam = None if self.compiled else torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
        self._moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params] if self.compiled else []
        self._step = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One step at learning rate ``lr`` from the gradients in ``p.grad``."""
        self._step += 1
        if self.compiled:
            for p, (m, v) in zip(self.params, self._moments, strict=True):
                assert p.grad is not None
                native_train.prox_adam_step(p, p.grad.contiguous(), m, v, lam=self.lam, beta1=self.betas[0],
                                            beta2=self.betas[1], lr=lr, eps=self.eps, step=self._step)  # fmt: skip
            return
        assert self._adam is not None
        before = []
        for p in self.params:
            assert p.grad is not None
            if self.lam > 0:
                p.grad.copy_(proximal_grad(p, p.grad, self.lam))
            before.append(p.sign())
        self._adam.param_groups[0]["lr"] = lr
        self._adam.step()
        for p, sgn in zip(self.params, before, strict=True):
            crossed = (sgn != 0) & (p.sign() != sgn)
            p.masked_fill_(crossed, 0.0)
            state = self._adam.state.get(p)
            if state:
                state["exp_avg"].masked_fill_(crossed, 0.0)
