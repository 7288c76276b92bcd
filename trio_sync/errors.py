"""Matrix errors: the one exception type that becomes a ``{"errcode","error"}`` body."""

from __future__ import annotations


class MatrixError(Exception):
    """An error a client sees as an HTTP status and a Matrix error body.

    Raised anywhere below the HTTP layer; the app turns it into
    ``{"errcode": errcode, "error": message}`` with ``status``.
    """

    def __init__(self, status: int, errcode: str, message: str, **extra: object) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, object]:
        """The JSON body clients receive."""
        return {"errcode": self.errcode, "error": self.message, **self.extra}


def bad_json(message: str) -> MatrixError:
    """400 ``M_BAD_JSON``: the JSON parsed but is not of the right shape."""
    return MatrixError(400, "M_BAD_JSON", message)


def not_json(message: str = "Content not JSON.") -> MatrixError:
    """400 ``M_NOT_JSON``: the body is not JSON at all."""
    return MatrixError(400, "M_NOT_JSON", message)


def invalid_param(message: str) -> MatrixError:
    """400 ``M_INVALID_PARAM``: a query or path parameter is malformed."""
    return MatrixError(400, "M_INVALID_PARAM", message)


def forbidden(message: str) -> MatrixError:
    """403 ``M_FORBIDDEN``."""
    return MatrixError(403, "M_FORBIDDEN", message)


def not_found(message: str) -> MatrixError:
    """404 ``M_NOT_FOUND``."""
    return MatrixError(404, "M_NOT_FOUND", message)


class StorageError(Exception):
    """A database driver error, translated at the storage edge."""


def sole_exception(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``exc``.

    Nurseries that are implementation details (trio-asyncio's loop, a CLI command's
    nursery) wrap what they pass on; callers expect the error itself.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
