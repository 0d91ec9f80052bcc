"""The Flask side: routes, request and response schemas, errors, OpenAPI, auth."""
