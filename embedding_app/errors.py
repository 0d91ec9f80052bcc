"""OpenAI-shaped errors: one exception type, one status table, handlers that always answer JSON."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)

# The OpenAI error "type" for each status; anything unlisted is a client or server error by range.
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}


class ApiError(Exception):
    """An error the API reports to the caller, with OpenAI's message, type, param and code."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def error_type(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_response(error: ApiError) -> Response:
    """The JSON response for an ApiError."""
    body = {"error": {"message": error.message, "type": error_type(error.status),
                      "param": error.param, "code": error.code}}
    return Response(orjson.dumps(body), status=error.status, mimetype="application/json", headers=error.headers)


def _from_http(exc: HTTPException) -> ApiError:
    if exc.code == 404:
        message = f"Unknown route: {request.method} {request.path}"
    elif exc.code == 405:
        message = f"Method {request.method} is not allowed for {request.path}"
    elif exc.code == 413:
        message = (f"The request body is larger than this server's limit of "
                   f"{current_app.config['MAX_CONTENT_LENGTH']} bytes (MAX_REQUEST_BYTES)")
    else:
        message = exc.description or exc.name
    return ApiError(exc.code or 500, message, code=HTTP_CODES.get(exc.code))


def _http_error(exc: HTTPException) -> Response:
    response = error_response(_from_http(exc))
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: a 405 lists what is allowed
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ApiError(500, "The server had an error while processing your request.", code="internal_error"))


def register_error_handlers(app: Flask) -> None:
    """Make every error, expected or not, an OpenAI-shaped JSON response."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
