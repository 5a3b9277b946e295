"""Bridges to the training libraries researchers already use; each needs its own extra.

* :mod:`neuralcollapse.integrations.lightning`: ``NeuralCollapseCallback``, a Lightning
  callback that measures NC1-NC4 and shot-group accuracy on the validation loader every N
  epochs and logs them through the trainer's loggers (``pip install
  'neuralcollapse[lightning]'``).
* :mod:`neuralcollapse.integrations.torchmetrics`: ``CollapseMetric``, a
  ``torchmetrics.Metric`` wrapping :class:`~neuralcollapse.metrics.CollapseStats` (usable
  in a ``MetricCollection``, synchronised across processes by torchmetrics; ``pip install
  'neuralcollapse[torchmetrics]'``).

Nothing here is imported by ``import neuralcollapse``.
"""

from __future__ import annotations

# Importing a submodule without its package raises the ImportError of
# neuralcollapse.data.files.optional_module, which names the extra to install.
__all__: list[str] = []
