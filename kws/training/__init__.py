"""Training, one module per stage (:mod:`kws.pipeline` runs them in order for ``kws train``):

- :mod:`kws.training.config`: :class:`~kws.training.config.TrainConfig`, the one typed input
  (no TensorFlow);
- :mod:`kws.training.prepare`: the sources indexed, the normalisation fitted, validation features;
- :mod:`kws.training.fit`: the epochs, from examples and batches to the fitted model;
- :mod:`kws.training.mining`: hard negatives chosen for the next epoch;
- :mod:`kws.training.checkpoint`: checkpoints, resuming and fine-tuning;
- :mod:`kws.training.distribute`: replicas and machines (``--distribute``).

:mod:`kws.train` gathers the names a program needs.
"""
