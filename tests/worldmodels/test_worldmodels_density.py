"""Density-matrix invariants (spec §5.3 unit tests): partial trace, parameterisation, spectrum preservation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.worldmodels import density
from rollwise.worldmodels.uwm_jepa import UWMConfig, UWMJepa


def random_density(batch: int, d: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    a = torch.complex(torch.randn(batch, d, d, generator=gen, dtype=real),
                      torch.randn(batch, d, d, generator=gen, dtype=real))
    rho = a @ density.dagger(a)
    return rho / density.trace(rho)[:, None, None]


def test_partial_trace_of_product():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, dtype=torch.complex128, generator=gen)
    b = torch.randn(2, 2, dtype=torch.complex128, generator=gen)
    got = density.partial_trace_env(torch.kron(a, b), 8, 2)
    torch.testing.assert_close(got, a * torch.trace(b))


def test_hermitian_parameterisation_is_bijective():
    p = torch.randn(3, 64, dtype=torch.float64)
    h = density.hermitian(p, 8)
    torch.testing.assert_close(h, density.dagger(h))
    # recover the 64 reals: upper triangle (with diagonal) of Re, strict lower of Im
    back = torch.triu(h.real) + torch.tril(h.imag, -1)
    torch.testing.assert_close(back.reshape(3, 64), p)


def test_hermitian_features_are_an_isometry():
    h = density.hermitian(torch.randn(5, 64, dtype=torch.float64), 8)
    f = density.hermitian_features(h)
    assert f.shape == (5, 64)
    torch.testing.assert_close(f.norm(dim=-1), torch.linalg.norm(h, dim=(-2, -1)))


def test_entropy_and_purity_golden():
    mixed = density.maximally_mixed(1, 16, torch.complex128)
    assert float(density.purity(mixed)) == pytest.approx(1 / 16)
    assert float(density.entropy(mixed)) == pytest.approx(np.log(16))


def model_with_random_generator(dtype: torch.dtype, seed: int) -> UWMJepa:
    torch.manual_seed(seed)
    m = UWMJepa(UWMConfig(dtype=dtype))
    with torch.no_grad():  # H0, H1 entries ~ N(0, 0.3²) (spec's unit-test setting)
        m.h0.normal_(0.0, 0.3)
        m.h1.normal_(0.0, 0.3)
    return m


@torch.no_grad()
def blind_drift(dtype: torch.dtype, seed: int, steps: int = 30) -> dict[str, float]:
    m = model_with_random_generator(dtype, seed)
    gen = torch.Generator().manual_seed(seed)
    rho0 = random_density(64, 16, dtype, gen)
    acts = torch.randint(0, 5, (64, steps), generator=gen)
    rho = m.rollout(rho0, acts)
    u = m.unitaries()
    return {"spectrum": float((density.eigenvalues(rho) - density.eigenvalues(rho0)).abs().max()),
            "purity": float((density.purity(rho) - density.purity(rho0)).abs().max()),
            "entropy": float((density.entropy(rho) - density.entropy(rho0)).abs().max()),
            "trace": float((density.trace(rho) - 1).abs().max()),
            "unitarity": float((u @ density.dagger(u) - torch.eye(16, dtype=u.dtype)).abs().max())}


def test_spectrum_preservation_complex128():
    d = blind_drift(torch.complex128, 0)
    assert max(d["spectrum"], d["purity"], d["entropy"], d["trace"]) <= 1e-10
    assert d["unitarity"] <= 1e-12


def test_spectrum_preservation_complex64():
    d = blind_drift(torch.complex64, 0)
    assert d["spectrum"] <= 1e-5 and d["entropy"] <= 1e-4


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_spectrum_preservation_property(seed):
    d = blind_drift(torch.complex128, seed, steps=10)
    assert max(d["spectrum"], d["purity"], d["entropy"], d["trace"]) <= 1e-10


def test_drift_check_can_fail():
    """A non-unitary step (a measurement) changes the spectrum: the invariant test is not vacuous."""
    gen = torch.Generator().manual_seed(1)
    rho = random_density(4, 16, torch.complex128, gen)
    k = torch.linalg.matrix_exp(density.hermitian(torch.randn(256, dtype=torch.float64), 16))
    after = density.measure(k.expand(4, 16, 16), rho)
    assert (density.eigenvalues(after) - density.eigenvalues(rho)).abs().max() > 1e-3
