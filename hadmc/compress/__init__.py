"""Compression passes: ``pruning`` (physical channel removal), ``fusion`` (Conv+BN(+act)
folding), ``distill`` (knowledge-distillation fine-tune) and ``export`` (ONNX / TFLite,
fp32 / fp16 / int8). Import the submodule you need; nothing is imported eagerly so that
``import hadmc.compress.export`` does not pull in torch-pruning and vice versa."""
