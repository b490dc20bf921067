"""The compression search task: what the agents see, what a candidate is and how it scores.

- ``env``: one episode = one pass over the prunable layer groups; the heads come from the
  compression-pass registry (``hadmc.compress.registry``);
- ``observation``: the observation encoder (per-group features, hardware vector, the last
  candidate's outcome);
- ``candidate``: a joint action made real (compress, fine-tune, export, evaluate);
- ``reward``: MnasNet-style reward against targets, in tiers (feasible > over a limit >
  collapsed);
- ``pareto``: the archive of real measurements, its front and hypervolume.
"""
