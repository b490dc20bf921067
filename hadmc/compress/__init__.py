"""Compression: the operators the agents choose, and their registry.

``registry`` holds ``CompressionPass``, the one declaration of an operator as an agent head
(its choices, when it acts, how it decodes and applies), and ``default_passes()``; the
built-in passes are ``passes/`` (pruning, quantization, fusion, distillation, update scope).
The implementations they apply: ``pruning`` (physical channel removal), ``fusion`` (Conv+BN
(+act) folding), ``distill`` (knowledge-distillation fine-tune) and ``export`` (ONNX / TFLite,
fp32 / fp16 / int8). Import the submodule you need; nothing is imported eagerly so that
``import hadmc.compress.export`` does not pull in torch-pruning and vice versa, and the
registry and pass declarations load without torch.
"""
