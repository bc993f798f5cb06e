"""Schemathesis hooks for scripts/schemathesis.sh.

PROTOCOL.md takes an integer as a JSON number written without fraction or exponent (`2.0`
is refused), a rule JSON Schema cannot state: under OpenAPI 3.1 `2.0` is an integer, and
schemathesis sends whole floats for integer fields. The document says so in its
descriptions; this hook sends such numbers as integers, as a client generated from the
document does, so every other disagreement between the document and the server still
fails the run.
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
