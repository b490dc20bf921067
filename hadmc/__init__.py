"""hadmc: hardware-aware model compression (the torch side).

Subpackages and modules, one job each: ``data`` (digits and user .npz), ``models`` (demo
CNNs, training, cache), ``compress`` (pruning, fusion, distillation, quantization/export),
``chunking`` (content-defined chunks for uploads and update deltas), ``policy``/``ppo``
(the five-agent PPO controller), ``reward``/``pareto`` (scoring), ``hal`` (device
abstraction), ``env`` (the compression environment).
"""

__version__ = "0.1.0"
