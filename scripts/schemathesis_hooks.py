"""Schemathesis hooks for scripts/schemathesis.sh.

PROTOCOL.md takes an integer as a JSON number written without fraction or exponent (`2.0`
is refused), a rule JSON Schema cannot state: under OpenAPI 3.1 `2.0` is an integer, and
schemathesis sends whole floats for integer fields. The document says so in its
descriptions; this hook sends such numbers as integers, as a client generated from the
document does, so every other disagreement between the document and the server still
fails the run.

A generated query whose extra parameter would not reach the wire (its value None or an
empty list) is dropped: `requests` sends it as the valid request it then is, and
schemathesis would count that request's acceptance as a schema-violating one accepted.
"""

import schemathesis


def _integral(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


@schemathesis.hook
def map_body(context, body):
    return _integral(body)


def _reaches_the_wire(value):
    # `requests` sends nothing for a query value of None or an empty list: a request
    # generated with such an extra parameter (to break `additionalProperties: false`)
    # goes out as the valid request it no longer differs from.
    return value is not None and value != [] and value != {}


@schemathesis.hook
def filter_query(context, query):
    return query is None or all(_reaches_the_wire(v) for v in query.values())
