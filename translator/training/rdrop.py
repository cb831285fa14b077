"""R-Drop (Liang et al., 2021): a consistency loss between two dropout passes of one batch."""

from __future__ import annotations

from translator.training.losses import replica_share, symmetric_kl
from translator.training.model import TrainingTransformer


class RDropTransformer(TrainingTransformer):
    """A TrainingTransformer whose training loss adds R-Drop's consistency term.

    Each training step runs the batch twice with different dropout masks and minimises the mean of
    the two compiled losses plus `consistency` (α) times their mean symmetric KL divergence per
    real target token (`symmetric_kl`): twice the compute per step. Evaluation losses, the weights
    and `get_config()` are the plain Transformer's, so a run trained with it loads as one.

    Args:
        consistency: the weight α of the KL term (a training setting, not saved with the model).
        *args, **kwargs: the Transformer's.
    """

    def __init__(self, *args, consistency: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.consistency = consistency

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if not (training and self.consistency):
            return loss
        again = self(x, training=True)  # other dropout masks
        loss_again = super().compute_loss(x, y, again, sample_weight, training=training)
        divergence = replica_share(symmetric_kl(y, y_pred, again))
        return 0.5 * (loss + loss_again) + self.consistency * divergence
