"""The wire contract between hadmc-host and hadmc-device.

``hadmc_device.proto`` is the source; ``hadmc_device_pb2*.py`` are generated from it by
``python -m protos.generate`` and committed (a test checks they are fresh). See the proto's
header comment for the protocol: GetInfo -> MissingChunks -> UploadChunks -> Profile, with
failures as gRPC status codes plus a ``ProfileError`` in the ``hadmc-error-bin`` trailer.
"""

ERROR_TRAILER_KEY = "hadmc-error-bin"
AUTH_METADATA_KEY = "authorization"
