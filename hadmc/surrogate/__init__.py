"""Surrogates of the search: cheap, *predicted* figures that rank proposals before the device.

- ``structure``: exact channel arithmetic of a pruned model (MACs and parameters per precision,
  int8/float boundaries) from the layer-group structure, without building the model.
- ``latency``: a least-squares latency model over those features, calibrated on real
  measurements from the user's device and refit after every one.
- ``accuracy``: an accuracy proxy (per-group pruning sensitivity with BN re-estimated, no
  fine-tune) plus a correction learned from the real candidates.

Everything these modules produce is labelled ``predicted``; it never enters the Pareto front.
"""
