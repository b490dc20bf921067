"""hadmc: hardware-aware model compression (the torch side).

Subpackages, one job each (imports point down this list, never up):

- ``rl``: the task-agnostic PPO core (policy, buffer, update, checkpoints);
- ``search``: the compression task (environment, observation, candidate, reward, Pareto);
- ``surrogate``: the device-calibrated latency model and accuracy proxy of the inner loop;
- ``compress``: the compression-pass registry and the operators (pruning, fusion,
  distillation, quantization / export);
- ``device``: the host's view of a device (``hal``, ``hal_sim``) and upload chunking;
- ``models`` (demo CNNs, training, cache), ``data`` (digits and user .npz), ``stats``,
  ``native_output``.
"""

__version__ = "0.1.0"
