"""The host's side of a device: the hardware abstraction (``hal``: a real agent over gRPC,
``hal_sim``: a labelled analytic estimate for ``sim:<profile>``) and content-defined chunking
of artifacts for upload (``chunking``). The board side is ``device_agent``, which imports none
of this."""
