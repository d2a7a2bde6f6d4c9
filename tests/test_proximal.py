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


def _reference_step(p, g, m, v, lam, beta1, beta2, lr, eps, step):  # type: ignore[no-untyped-def]
    """The compiled step's arithmetic, value by value, in numpy float32 (each operation rounded as C rounds it)."""
    import numpy as np

    f = np.float32
    bc1, bc2 = 1.0 - beta1**step, 1.0 - beta2**step
    step_size, bc2_sqrt, lam_f = f(lr / bc1), f(np.sqrt(bc2)), f(lam)
    w1, b2, w2, eps_f = f(1.0 - beta1), f(beta2), f(1.0 - beta2), f(eps)
    p, g, m, v = (np.array(a, np.float32) for a in (p, g, m, v))
    if lam_f > 0:
        leave = np.where(np.abs(g) > lam_f, g - lam_f * np.where(g > 0, f(1), f(-1)), f(0))
        g = np.where(p == 0, leave, g + lam_f * np.where(p > 0, f(1), f(-1))).astype(np.float32)
    m = m + w1 * (g - m)
    v = v * b2 + w2 * (g * g)
    nxt = p + (-step_size) * (m / (np.sqrt(v) / bc2_sqrt + eps_f))
    crossed = ((p > 0) & ~(nxt > 0)) | ((p < 0) & ~(nxt < 0))
    return np.where(crossed, f(0), nxt), np.where(crossed, f(0), m), v


@pytest.mark.skipif(not nr.available(), reason="the compiled kernels are not built (pip install -e .)")
@pytest.mark.parametrize("lam", [0.0, 2e-3])
def test_compiled_step_is_the_value_by_value_arithmetic_bit_for_bit(lam: float) -> None:
    """The compiled step is vectorised (selects, the sqrt instruction): it must still compute each value
    exactly as the scalar formula does — an odd count (a vector remainder), values at zero, values
    pushed across zero and landing on it, both signs."""
    import numpy as np

    from rerf_codec.field import native_train

    rng = np.random.default_rng(5)
    n = 10_007
    p = rng.normal(0, 0.01, n).astype(np.float32)
    p[rng.random(n) < 0.5] = 0
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    tp, tm, tv = (torch.from_numpy(a.copy()) for a in (p, m, v))
    for step in range(1, 8):
        g = (rng.normal(0, 3e-3, n) * (rng.random(n) < 0.6)).astype(np.float32)
        g[:8] = [0.0, -0.0, 1e-30, -1e-30, lam, -lam, 0.5, -0.5]
        lr = 0.3 * 0.7**step
        native_train.prox_adam_step(tp, torch.from_numpy(g), tm, tv, lam=lam, beta1=0.9, beta2=0.99, lr=lr, eps=1e-15,
                                    step=step)  # fmt: skip
        p, m, v = _reference_step(p, g, m, v, lam, 0.9, 0.99, lr, 1e-15, step)
        for mine, ref in ((tp, p), (tm, m), (tv, v)):
            assert np.array_equal(mine.numpy().view(np.uint32), ref.view(np.uint32)), step
    assert (p != 0).mean() > 0.05 and (lam == 0 or (p == 0).mean() > 0.3)  # both kinds of value were exercised


@pytest.mark.skipif(not nr.available(), reason="the compiled kernels are not built (pip install -e .)")
def test_compiled_step_refuses_shared_buffers() -> None:
    from rerf_codec.field import native_train

    p, m, v = torch.zeros(16), torch.zeros(16), torch.zeros(16)
    with pytest.raises(ValueError, match="separate tensors"):
        native_train.prox_adam_step(p, p, m, v, lam=0.0, beta1=0.9, beta2=0.99, lr=0.1, eps=1e-15, step=1)
