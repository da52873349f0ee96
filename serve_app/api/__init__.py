"""The HTTP layer (Starlette): the route table (``endpoints``), the handlers, body reading, auth and rate
limits, the one error table (``errors``), admission control and the OpenAPI document. Logic lives in
the services below it; nothing here decides an answer."""
