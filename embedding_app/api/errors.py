"""OpenAI-shaped errors: one exception type, one status table, handlers that always answer JSON."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, current_app, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)

# The OpenAI error "type" for each status; anything unlisted is a client or server error by range.
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
HTTP_CODES = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
              414: "uri_too_long", 415: "unsupported_media_type", 431: "request_header_fields_too_large"}


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


def _printable(text: str | None) -> str | None:
    """text with anything UTF-8 cannot carry (lone surrogates a client sent) written as a \\u escape."""
    return text if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """The OpenAI error JSON; safe for any string, since messages may echo what the client sent."""
    body = {"error": {"message": _printable(message), "type": error_type(status),
                      "param": _printable(param), "code": code}}
    return orjson.dumps(body)


def error_response(error: ApiError) -> Response:
    """The JSON response for an ApiError."""
    return Response(error_body(error.status, error.message, error.param, error.code), status=error.status,
                    mimetype="application/json", headers=error.headers)


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


def _malformed_body(exc: Exception) -> Response:
    # gunicorn raises these while the app reads a body whose framing is broken (chunk sizes, terminators).
    return error_response(ApiError(400, f"The request body is malformed: {exc}", code="malformed_request"))


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ApiError(500, "The server had an error while processing your request.", code="internal_error"))


def register_error_handlers(app: Flask) -> None:
    """Make every error, expected or not, an OpenAI-shaped JSON response."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ParseException, _malformed_body)
    app.register_error_handler(NoMoreData, _malformed_body)
    app.register_error_handler(Exception, _unexpected)
