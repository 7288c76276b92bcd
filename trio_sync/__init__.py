"""trio-sync: a Matrix ``/sync`` server built on Trio's structured concurrency."""

from .config import Config, load_config
from .errors import MatrixError
from .service import Service, open_service
from .tokens import StreamToken, TopologyToken

__all__ = [
    "Config",
    "MatrixError",
    "Service",
    "StreamToken",
    "TopologyToken",
    "load_config",
    "open_service",
]
__version__ = "0.1.0"
