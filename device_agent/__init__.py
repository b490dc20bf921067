"""hadmc-device: the gRPC agent that measures models on an edge board.

Imports only ``protos``, the standard library, numpy, grpc, psutil and (in the measuring
worker, lazily) onnxruntime / ai_edge_litert — never torch nor ``hadmc``, so it installs on a
board with ``pip install "hadmc[device]"``. Kept import-light on purpose: the measuring worker
imports this package too, and its start-up time is part of every Profile call.
"""

__version__ = "0.1.0"
