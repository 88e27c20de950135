"""The one exception tree of omnivox.

Every error a client can see is an ``OmnivoxError``; each class knows its HTTP
status and OpenAI's ``type`` and ``code``, and ``body()`` renders OpenAI's
``{"error": {"message", "type", "param", "code"}}``. Foreign exceptions are
translated at one boundary (the server's handlers); anything else becomes a
``ServerError`` with a generic message.

    OmnivoxError                         (500, server_error)
    ├── InvalidRequestError              (400, invalid_request_error)
    │   ├── UnknownParameterError        code unknown_parameter
    │   ├── InvalidValueError            code invalid_value
    │   ├── UnsupportedValueError        code unsupported_value
    │   ├── UnsupportedAudioFormatError  code unsupported_format
    │   ├── AudioTooLongError            code audio_too_long
    │   ├── AudioNotFoundError           code audio_not_found
    │   ├── ContextLengthExceededError   code context_length_exceeded
    │   ├── RequestTimeoutError          (408) code request_timeout
    │   ├── RequestTooLargeError         (413) code request_too_large
    │   └── UnsupportedMediaTypeError    (415) code unsupported_media_type
    ├── AuthenticationError              (401, invalid_request_error)
    ├── PermissionDeniedError            (403, invalid_request_error)
    │   └── HostNotAllowedError          code host_not_allowed
    ├── NotFoundError                    (404, invalid_request_error)
    │   ├── ModelNotFoundError           code model_not_found
    │   └── UnknownURLError              code unknown_url
    ├── RateLimitError                   (429, requests | tokens)
    ├── ServerError                      (500, server_error)
    ├── EngineOverloadedError            (503, server_error)
    └── ModelUnavailableError            raised at start, never sent: a model is missing
"""

from __future__ import annotations

from typing import Any, ClassVar

GENERIC_SERVER_MESSAGE = "The server had an error while processing your request. Sorry about that!"


class OmnivoxError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type(),
                "param": self.param,
                "code": self.code,
            }
        }

    def error_type(self) -> str:
        return self.type


class InvalidRequestError(OmnivoxError):
    status = 400
    type = "invalid_request_error"


class UnknownParameterError(InvalidRequestError):
    default_code = "unknown_parameter"


class InvalidValueError(InvalidRequestError):
    default_code = "invalid_value"


class UnsupportedValueError(InvalidRequestError):
    default_code = "unsupported_value"


class UnsupportedAudioFormatError(InvalidRequestError):
    default_code = "unsupported_format"


class AudioTooLongError(InvalidRequestError):
    default_code = "audio_too_long"


class AudioNotFoundError(InvalidRequestError):
    default_code = "audio_not_found"


class ContextLengthExceededError(InvalidRequestError):
    default_code = "context_length_exceeded"


class RequestTooLargeError(InvalidRequestError):
    status = 413
    default_code = "request_too_large"


class RequestTimeoutError(InvalidRequestError):
    status = 408
    default_code = "request_timeout"


class UnsupportedMediaTypeError(InvalidRequestError):
    status = 415
    default_code = "unsupported_media_type"


class AuthenticationError(OmnivoxError):
    status = 401
    type = "invalid_request_error"


class PermissionDeniedError(OmnivoxError):
    status = 403
    type = "invalid_request_error"


class HostNotAllowedError(PermissionDeniedError):
    default_code = "host_not_allowed"


class NotFoundError(OmnivoxError):
    status = 404
    type = "invalid_request_error"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"


class UnknownURLError(NotFoundError):
    default_code = "unknown_url"


class RateLimitError(OmnivoxError):
    """429; ``limit_type`` is "requests" or "tokens" and becomes the body's ``type``."""

    status = 429
    type = "requests"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit_type: str = "requests", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limit_type = limit_type

    def error_type(self) -> str:
        return self.limit_type


class ServerError(OmnivoxError):
    status = 500
    type = "server_error"

    def __init__(self, message: str = GENERIC_SERVER_MESSAGE, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class EngineOverloadedError(OmnivoxError):
    status = 503
    type = "server_error"


class UpstreamUnavailableError(OmnivoxError):
    """No upstream server for a part of the model work answered (503; retry later)."""

    status = 503
    type = "server_error"
    default_code = "upstream_unavailable"


class UpstreamError(OmnivoxError):
    """An upstream server failed while answering (502)."""

    status = 502
    type = "server_error"
    default_code = "upstream_error"


class ModelUnavailableError(OmnivoxError):
    """A model the configuration names can not be loaded; the message says what to do."""
