"""The residual fit's optimiser: exact zeros by the orthant-wise L1 rule, the same step compiled and in torch."""

from __future__ import annotations

import pytest
import torch

from rerf_codec.field import native_render as nr
from rerf_codec.train.proximal import ProximalAdam, proximal_grad


def _run(choice: str, monkeypatch: pytest.MonkeyPatch, lam: float, steps: int = 6) -> tuple[torch.Tensor, bool]:
    monkeypatch.setenv(nr.ENV, choice)
    g = torch.Generator().manual_seed(0)
    p = torch.zeros(4000, 3)
    p[:2000] = torch.randn(2000, 3, generator=g) * 0.05  # half start at exactly zero
    p.requires_grad_(True)
    opt = ProximalAdam([p], 0.05, (0.9, 0.99), 1e-15, lam)
    for i in range(steps):
        opt.zero_grad()
        target = torch.randn(4000, 3, generator=g) * 0.1
        ((p - target) ** 2).sum().mul(0.01).backward()
        opt.step(0.05 * 0.5**i)
    return p.detach().clone(), opt.compiled


@pytest.mark.skipif(not nr.available(), reason="the compiled kernels are not built (pip install -e .)")
@pytest.mark.parametrize("lam", [0.0, 3e-3])
def test_compiled_step_equals_the_torch_step(lam: float, monkeypatch: pytest.MonkeyPatch) -> None:
    torch_p, compiled_t = _run("torch", monkeypatch, lam)
    native_p, compiled_n = _run("native", monkeypatch, lam)
    assert not compiled_t and compiled_n
    assert torch.allclose(torch_p, native_p, atol=1e-6), (torch_p - native_p).abs().max()
    same_zeros = ((torch_p == 0) == (native_p == 0)).float().mean()
    assert same_zeros > 0.999
    if lam > 0:
        assert (native_p == 0).float().mean() > 0.2  # the L1 rule keeps many values exactly at zero


def test_values_stop_exactly_at_zero_and_leave_it_only_against_a_strong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    for choice in ("torch", "native") if nr.available() else ("torch",):
        monkeypatch.setenv(nr.ENV, choice)
        p = torch.tensor([0.0, 0.0, 1e-4, -1e-4, 0.5], requires_grad=True)
        opt = ProximalAdam([p], 0.01, (0.9, 0.99), 1e-15, 0.1)
        p.grad = torch.tensor([0.05, -0.3, 1.0, -1.0, 0.0])
        opt.step(0.01)
        # weak gradient at zero: stays; strong: leaves against it; small values pushed across zero stop there;
        # the L1 term alone shrinks the large value
        assert p[0] == 0 and p[1] > 0 and p[2] == 0 and p[3] == 0 and 0 < p[4] < 0.5, (choice, p)


def test_proximal_grad_is_the_l1_subgradient_rule() -> None:
    r = torch.tensor([0.0, 0.0, 0.0, 2.0, -2.0])
    g = torch.tensor([0.05, 0.3, -0.3, 0.05, 0.05])
    assert torch.allclose(proximal_grad(r, g, 0.1), torch.tensor([0.0, 0.2, -0.2, 0.15, -0.05]))
