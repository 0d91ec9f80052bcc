"""Every error code this server answers, whichever layer answers it (the app, gunicorn or nginx): data only."""

from __future__ import annotations

from typing import NamedTuple

INVALID = "invalid_request_error"
SERVER = "server_error"


class Fault(NamedTuple):
    """What a code means: its HTTP status, OpenAI's error type, and a message for when there is no better one."""

    status: int
    type: str
    message: str


# One code per fault: a client that switches on `code` sees the same value with or without the proxy in front.
CATALOGUE: dict[str, Fault] = {
    # The request itself (app: parsing, schemas, service)
    "invalid_json": Fault(400, INVALID, "The request body is not valid JSON"),
    "unknown_parameter": Fault(400, INVALID, "Unrecognized request argument supplied"),
    "missing_parameter": Fault(400, INVALID, "A required parameter is missing"),
    "invalid_value": Fault(400, INVALID, "A parameter has an invalid value"),
    "invalid_input": Fault(400, INVALID, "The input is not valid"),
    "too_many_inputs": Fault(400, INVALID, "The request has more inputs than this server's limit (MAX_INPUTS)"),
    "too_many_tokens": Fault(400, INVALID, "The request has more tokens than this server's limit"),
    "unsupported_model": Fault(400, INVALID, "The model cannot answer this route"),
    "model_not_found": Fault(404, INVALID, "The model does not exist on this server"),
    "missing_api_key": Fault(401, "authentication_error", "Missing API key: send it as 'Authorization: Bearer <key>'"),
    "invalid_api_key": Fault(401, "authentication_error", "Incorrect API key provided"),
    # HTTP itself (gunicorn, werkzeug or nginx, whichever sees it first)
    "malformed_request": Fault(400, INVALID, "The request is not valid HTTP/1.1 (request line, headers, body framing "
                                             "or Transfer-Encoding)"),
    "forbidden": Fault(403, "permission_error", "Request forbidden"),
    "not_found": Fault(404, INVALID, "Unknown route"),
    "method_not_allowed": Fault(405, INVALID, "This method is not allowed"),
    "request_timeout": Fault(408, INVALID, "The request was not received completely in time"),
    "length_required": Fault(411, INVALID, "A request body needs a Content-Length or chunked Transfer-Encoding"),
    "request_too_large": Fault(413, INVALID, "The request body is larger than this server's limit (MAX_REQUEST_BYTES)"),
    "uri_too_long": Fault(414, INVALID, "The request line is too long"),
    "unsupported_media_type": Fault(415, INVALID, "Content-Type must be application/json"),
    "expectation_failed": Fault(417, INVALID, "The Expect header cannot be met"),
    "headers_too_large": Fault(431, INVALID, "A request header, or all of them together, is too long"),
    "rate_limit_exceeded": Fault(429, "rate_limit_error", "Too many requests; retry after the Retry-After delay"),
    "client_closed": Fault(499, INVALID, "The client closed the connection before the answer was ready"),
    # The server's side
    "internal_error": Fault(500, SERVER, "The server had an error while processing your request."),
    "upstream_unavailable": Fault(502, SERVER, "The embedding server is not reachable (starting or restarting)"),
    "server_overloaded": Fault(503, SERVER, "The server is busy; retry after the Retry-After delay"),
    "timeout": Fault(503, SERVER, "The request took longer than this server's time limit; send less per request"),
    "upstream_timeout": Fault(504, SERVER, "The embedding server did not answer in time"),
}

# The code for an error the HTTP layer reports by status alone (werkzeug's HTTPException, gunicorn's own errors).
BY_STATUS: dict[int, str] = {
    400: "malformed_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
    411: "length_required", 413: "request_too_large", 414: "uri_too_long", 415: "unsupported_media_type",
    417: "expectation_failed", 431: "headers_too_large", 500: "internal_error",
}
