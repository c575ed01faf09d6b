"""All trapd exceptions, in one place.

    TrapdError
    ├── ConfigError (ValueError)         config.yaml is invalid; .problems lists every one
    ├── HardwareError (RuntimeError)     a device could not be opened
    │   ├── CameraUnavailable            no camera, or it will not reopen
    │   └── GpioUnavailable              no GPIO pin factory, or the pin is busy
    ├── CaptureFailed (RuntimeError)     one capture timed out or errored (recoverable)
    ├── StorageError (OSError)           the queue cannot be opened or written
    ├── ExportError (ValueError)         a Camtrap DP package cannot be written or retimed
    └── OffloadError (OSError)           the offload destination is missing, full or conflicting
"""


class TrapdError(Exception):
    """Root of every error trapd raises on purpose."""


class ConfigError(TrapdError, ValueError):
    def __init__(self, problems: list) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class HardwareError(TrapdError, RuntimeError):
    pass


class CameraUnavailable(HardwareError):
    pass


class GpioUnavailable(HardwareError):
    pass


class CaptureFailed(TrapdError, RuntimeError):
    pass


class StorageError(TrapdError, OSError):
    pass


class ExportError(TrapdError, ValueError):
    pass


class OffloadError(TrapdError, OSError):
    pass
