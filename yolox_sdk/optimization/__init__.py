"""Making a trained model smaller and faster: structured (channel) pruning with recovery finetuning, and
the maths of knowledge distillation.

- ``pruning``: the plan (ratio/method/scope/target) and the torch-pruning call, the one import of it.
- ``taylor``: loss gradients on training images for Taylor importance.
- ``figures``: parameters, MACs, CPU latency and val mAP of a model.
- ``job``: ``prune`` (``yolox-sdk prune``): check, measure, prune, write, reload, measure, recover.
- ``report``: the before/after table.
- ``distillation``: the soft-target and box terms a teacher adds to the student's loss (the ``loss_term``
  plugin ``distillation`` in ``builtin/losses`` uses them; ``engine.loss_terms`` runs them).

Loading a pruned checkpoint needs none of this (``yolox_sdk.models.structure``).
"""

from yolox_sdk.optimization.job import PruneResult, prune

__all__ = ["PruneResult", "prune"]
