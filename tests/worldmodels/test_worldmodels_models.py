"""UWM-JEPA encoder/predictor checks and the LSTM-JEPA parameter layout (spec §5.3 unit tests)."""

import numpy as np
import pytest
import torch

from rollwise.worldmodels import density
from rollwise.worldmodels import env as spring
from rollwise.worldmodels.baselines import RecurrentConfig, RecurrentJepa
from rollwise.worldmodels.training import to_long
from rollwise.worldmodels.uwm_jepa import UWMConfig, UWMJepa

TASK = spring.SpringConfig()


def batch(n: int = 32, seed: int = 0) -> spring.Windows:
    return spring.sample_windows(TASK, np.random.default_rng(seed), n)


@torch.no_grad()
def test_encoder_output_is_a_density_matrix():
    torch.manual_seed(0)
    m = UWMJepa(UWMConfig(g_init_std=0.5, h_init_std=0.3, measurement_bound=None))
    w = batch()
    rho = m.encode(to_long(w.tokens), to_long(w.actions))
    assert rho.dtype == torch.complex64 and rho.shape == (32, 16, 16)
    assert (rho - density.dagger(rho)).abs().max() <= 1e-6
    assert (density.trace(rho) - 1).abs().max() <= 1e-5
    assert density.eigenvalues(rho).min() >= -1e-6
    assert density.purity(rho).min() > 1 / 16 + 1e-4  # observations did move it off I/16
    rs = m.reduced(rho)
    assert (density.trace(rs) - 1).abs().max() <= 1e-5
    assert density.eigenvalues(rs).min() >= -1e-6


def test_measurement_operators_are_positive_and_mask_is_identity():
    torch.manual_seed(1)
    m = UWMJepa()
    k = m.measurement_operators().detach()
    assert k.shape == (17, 16, 16)
    torch.testing.assert_close(k[-1], torch.eye(16, dtype=k.dtype))
    assert torch.linalg.eigvalsh(k[:-1]).min() > 0
    # K(o) ⊗ I_E: the environment block is the identity
    torch.testing.assert_close(k[3].reshape(8, 2, 8, 2)[:, 0, :, 1], torch.zeros(8, 8, dtype=k.dtype))


@torch.no_grad()
def test_no_action_equals_base_dynamics():
    """Rollout with a = 0 equals rollout with H1 := 0 under any actions (the paper's 'base dynamics')."""
    torch.manual_seed(2)
    m = UWMJepa(UWMConfig(h_init_std=0.3, dtype=torch.complex128))
    w = batch(16)
    tok, act = spring.context(TASK, w)
    rho = m.encode(to_long(tok), to_long(act))
    zero = m.rollout(rho, torch.full((16, 5), spring.NO_ACTION))
    m.h1.zero_()
    base = m.rollout(rho, to_long(spring.future_actions(TASK, w)))
    torch.testing.assert_close(zero, base, atol=1e-12, rtol=0)


@torch.no_grad()
def test_actions_change_the_prediction():
    torch.manual_seed(3)
    m = UWMJepa(UWMConfig(h_init_std=0.3))
    rho = density.maximally_mixed(1, 16) + 0.01 * torch.diag(torch.linspace(-1, 1, 16)).to(torch.complex64)
    a = m.rollout(rho, torch.tensor([[0, 0]]))
    b = m.rollout(rho, torch.tensor([[4, 4]]))
    assert (a - b).abs().max() > 1e-4


def test_measurement_bound_caps_the_generator():
    torch.manual_seed(4)
    m = UWMJepa(UWMConfig(g_init_std=1.0, measurement_bound=0.5, dtype=torch.complex128))
    k = m.measurement_operators().detach()[:-1].reshape(16, 8, 2, 8, 2)[:, :, 0, :, 0]
    g_norm = torch.linalg.eigvalsh(k).log().norm(dim=-1)  # K = exp(G): ‖G‖_F = ‖log λ(K)‖
    # the raw 64-vector is capped at 0.5; off-diagonal reals appear twice in G, so ‖G‖_F ∈ [0.5, 0.5·√2]
    assert g_norm.max() <= 0.5 * 2**0.5 + 1e-9
    assert g_norm.min() >= 0.5 - 1e-9  # entries ~N(0, 1): every generator was above the bound
    with torch.no_grad():
        m.g_obs.mul_(1e-3)  # below the bound: untouched
    k = m.measurement_operators().detach()[:-1].reshape(16, 8, 2, 8, 2)[:, :, 0, :, 0]
    expected = torch.linalg.norm(density.hermitian(m.g_obs.detach().double(), 8), dim=(-2, -1))
    torch.testing.assert_close(torch.linalg.eigvalsh(k).log().norm(dim=-1), expected)


def test_uwm_parameter_count():
    groups = UWMJepa().parameter_groups()
    assert groups == {"unitary_predictor": 512, "measurement": 1024, "projection": 4680, "total": 6216}
    assert sum(p.numel() for p in UWMJepa().parameters() if p.requires_grad) == 6216


def test_lstm_parameter_layout_matches_the_release():
    groups = RecurrentJepa().parameter_groups()
    assert groups == {"encoder": 1298, "projection_online": 1612, "predictor_head": 1612, "predictor": 1740,
                      "total": 6262}
    assert abs(UWMJepa().parameter_groups()["total"] - 6262) / 6262 <= 0.05


def test_gru_variant_and_bad_cell():
    m = RecurrentJepa(RecurrentConfig(cell="gru"))
    w = batch(4)
    z = m.encode(to_long(w.tokens), to_long(w.actions))
    assert m.rollout(z, torch.zeros(4, 5, dtype=torch.long)).shape == (4, 12)
    with pytest.raises(ValueError, match="valid"):
        RecurrentJepa(RecurrentConfig(cell="transformer"))


def test_probe_features_are_63_dimensional():
    m = UWMJepa()
    rho = density.maximally_mixed(2, 16)
    assert m.features(rho).shape == (2, 64) and m.probe_features(rho).shape == (2, 63)
    assert m.features(rho).abs().max() < 1e-6  # centred: I/16 reads as zero
