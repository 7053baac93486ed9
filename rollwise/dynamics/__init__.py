"""AL-RNNs on chaotic dynamics: identity teacher forcing vs the marginal likelihood of a switching
AL-RNN (Herz, Durstewitz, Koppe, arXiv 2604.25904). See ``docs/tf_bayes.md``.

Modules: ``data`` (Lorenz-63), ``alrnn`` (model, ITF), ``teacher_forcing`` (ITF training, the baseline),
``measures`` (D_stsp, D_H, Lyapunov, PE_n), ``switching`` (regime paths, evidence), ``curvature``
(Louis' identity), ``finetune`` (windowed evidence fine-tuning and its control), ``repro``.
"""

from rollwise.dynamics.alrnn import ALRNN, ALRNNConfig, ALRNNParams, free_run, itf_loss, itf_rollout
from rollwise.dynamics.curvature import aggregate, window_information
from rollwise.dynamics.data import LorenzConfig, make_lorenz
from rollwise.dynamics.finetune import FinetuneConfig, evidence_finetune, itf_control
from rollwise.dynamics.measures import (
    max_lyapunov,
    power_spectrum_distance,
    prediction_error,
    state_space_divergence,
)
from rollwise.dynamics.switching import SwitchingConfig, window_posterior
from rollwise.dynamics.teacher_forcing import ITFConfig, train_itf

__all__ = [
    "ALRNN", "ALRNNConfig", "ALRNNParams", "FinetuneConfig", "ITFConfig", "LorenzConfig", "SwitchingConfig",
    "aggregate", "evidence_finetune", "free_run", "itf_control", "itf_loss", "itf_rollout", "make_lorenz",
    "max_lyapunov", "power_spectrum_distance", "prediction_error", "state_space_divergence", "train_itf",
    "window_information", "window_posterior",
]
