"""Poison messages: request bodies no consumer may choke on, one of each kind and floods of copies."""

from __future__ import annotations

import json

POISON = {
    "a NUL in the request id": b'{"request_id": "abc\\u0000def"}',
    "a lone surrogate in requested_by": b'{"requested_by": "x\\ud800y"}',
    "JSON nested thousands deep": b"[" * 5000 + b"]" * 5000,
    "an integer of 5,000 digits": b'{"overrides": {"max_obs": ' + b"9" * 5000 + b"}}",
    "a body of 4 MB": json.dumps({"request_id": "x" * 4_000_000}).encode(),
    "a string too long for the schema": json.dumps({"request_id": "y" * 50_000}).encode(),
    "bytes that are not UTF-8": b'{"request_id": "\xff\xfe"}',
}

#: Every kind of malformed request the fault injection of issue 9 sent, as a function of a number, so that
#: each copy differs from the others.
POISON_KINDS = {
    "NUL in request_id": lambda n: b'{"request_id": "r-%d\\u0000"}' % n,
    "NUL in requested_by": lambda n: b'{"requested_by": "svc\\u0000%d"}' % n,
    "lone surrogate in request_id": lambda n: b'{"request_id": "r-%d\\ud800"}' % n,
    "lone surrogate in requested_by": lambda n: b'{"requested_by": "\\udfff%d"}' % n,
    "JSON nested thousands deep": lambda n: b"[" * (3000 + n) + b"]" * (3000 + n),
    "an integer past 4,300 digits": lambda n: b'{"overrides": {"max_obs": 1%s}}' % (b"0" * (4400 + n)),
    # 3.9 MB once, as in the issue; the other copies just past the 64 KiB limit, to spare the Pub/Sub server.
    "a body over 64 KiB": lambda n: json.dumps({"request_id": f"{n}" + "x" * (3_900_000 if n == 0
                                                                          else 66_000 + n)}).encode(),
    "NUL bytes in a body that is not JSON": lambda n: b"\x00garbage\x00%d" % n,
    "bytes that are not UTF-8": lambda n: b'{"request_id": "\xff\xfe%d"}' % n,
    "not JSON": lambda n: b"{not json %d" % n,
    "schema-invalid": lambda n: json.dumps({"overrides": {"lookback_days": -n - 1}}).encode(),
    "a string too long for the schema": lambda n: json.dumps({"request_id": "y" * (50_000 + n)}).encode(),
}


def poison_flood(per_kind: int, valid: int) -> list[tuple[str, bytes | dict]]:
    """(kind, body) of ``per_kind`` messages of each kind, with ``valid`` requests spread evenly among them."""
    malformed = [(kind, make(n)) for n in range(per_kind) for kind, make in POISON_KINDS.items()]
    step = max(len(malformed) // max(valid, 1), 1)
    flood: list[tuple[str, bytes | dict]] = []
    for n, item in enumerate(malformed):
        if n % step == 0 and n // step < valid:
            flood.append(("valid", {"request_id": f"valid-{n // step}"}))
        flood.append(item)
    return flood
