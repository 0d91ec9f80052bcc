"""OpenAI-shaped errors: one exception type whose codes come from the catalogue, handlers that always answer JSON."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, current_app, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .error_catalogue import BY_STATUS, CATALOGUE

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API reports to the caller, with OpenAI's message, type, param and code."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        check_code(code, status)
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers

    @classmethod
    def of(cls, code: str, message: str | None = None, *, param: str | None = None,
           headers: dict[str, str] | None = None) -> ApiError:
        """The error for a catalogue code: its status, and its default message unless given one."""
        fault = CATALOGUE[code]
        return cls(fault.status, message or fault.message, param=param, code=code, headers=headers)


def check_code(code: str | None, status: int) -> None:
    """Fail loudly on a code the catalogue lacks, or one sent with another status than the catalogue's."""
    if code is not None and (code not in CATALOGUE or CATALOGUE[code].status != status):
        expected = CATALOGUE[code].status if code in CATALOGUE else "absent"
        raise ValueError(f"error code {code!r} with status {status}: the catalogue says {expected}")


def error_type(status: int, code: str | None = None) -> str:
    """OpenAI's error type: the code's, else that of the status's codes, else a client or server error by range."""
    fault = CATALOGUE.get(code) or next((fault for fault in CATALOGUE.values() if fault.status == status), None)
    return fault.type if fault else "server_error" if status >= 500 else "invalid_request_error"


def _printable(text: str | None) -> str | None:
    """text with anything UTF-8 cannot carry (lone surrogates a client sent) written as a \\u escape."""
    return text if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """The OpenAI error JSON; safe for any string, since messages may echo what the client sent."""
    check_code(code, status)
    body = {"error": {"message": _printable(message), "type": error_type(status, code),
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
    return ApiError(exc.code or 500, message, code=BY_STATUS.get(exc.code))


def _http_error(exc: HTTPException) -> Response:
    response = error_response(_from_http(exc))
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: a 405 lists what is allowed
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _malformed_body(exc: Exception) -> Response:
    # gunicorn raises these while the app reads a body whose framing is broken (chunk sizes, terminators).
    return error_response(ApiError.of("malformed_request", f"The request body is malformed: {exc}"))


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ApiError.of("internal_error"))


def register_error_handlers(app: Flask) -> None:
    """Make every error, expected or not, an OpenAI-shaped JSON response."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ParseException, _malformed_body)
    app.register_error_handler(NoMoreData, _malformed_body)
    app.register_error_handler(Exception, _unexpected)
