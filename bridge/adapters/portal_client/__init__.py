"""HTTP adapter for the reference diary import API: ``PortalClient`` implements the Portal port.

One ``requests.Session`` (pooled, kept alive), explicit (connect, read) timeouts and TLS
verification on every request, OAuth2 client-credentials bearer tokens refreshed 30 s before they
expire, a client-side rate limit, and retries driven by a tenacity ``Retrying`` built per call from
the settings: full-jitter exponential backoff, never shorter than the portal's ``Retry-After``.

Every answer gets one disposition (``classify`` for a whole response, ``classify_result`` for one
operation inside a batch answer); the driver acts on the disposition, never on a raw status::

    answer                                          disposition  what the client does
    ----------------------------------------------  -----------  ---------------------------------
    2xx with a JSON body of the expected shape      OK           return results / fingerprints
    2xx whose body is not JSON, or results whose    RETRIABLE    resend (the answer was lost or
      count or ids do not match the operations                   garbled; PUT/DELETE idempotent)
    per operation 2xx                               OK           OperationResult(ok=True)
    per operation 4xx (409, 422, 404...)            REJECTED     OperationResult(ok=False, type,
                                                                 description): that record only
    per operation 429, 5xx or a nonsense status     RETRIABLE    resend the whole batch
    408, 429, 5xx except 501/505 (JSON or not),     RETRIABLE    wait max(backoff, Retry-After),
      connection refused or reset, timeouts                      resend; after max_attempts:
                                                                 PortalUnavailable
    401 from /api                                   AUTH         fetch a new token, resend once;
                                                                 a second 401: PortalAuthError
    401 or 403 from /oauth/token                    AUTH         PortalAuthError
    400, 403, 404, 413, other 4xx, 3xx, 501, 505    FATAL        PortalFatalError, no retry
    TLS failure, malformed URL (no HTTP status)     FATAL        PortalFatalError(status=0)

Exceptions that leave the client (``bridge.core.errors``)::

    PortalAuthError      the credentials, or a freshly fetched token, were refused
    PortalFatalError     an answer retrying cannot fix
    PortalUnavailable    retriable failures until max_attempts ran out (attempts, last reason)
    ValueError           a programming error: a batch over batch_size, an unknown method

requests' own exceptions are translated at the seam (``client.PortalClient._exchange``) with
``raise ... from exc``. Nothing raised or logged here carries the client secret, the token or
operation data; errors carry the HTTP status, the portal's type and description, entity and
sourcedId. A client is not thread-safe: use one per thread.

The modules: ``settings`` (what the client is told), ``answers`` (every answer's disposition),
``wire`` (the JSON of batches, results, fingerprints and tokens), ``retries`` (backoff,
``Retry-After``, the waiting budget and the rate limit) and ``client`` (the session and the
calls).
"""

from bridge.adapters.portal_client.answers import (
    Disposition,
    Verdict,
    classify,
    classify_result,
    describe,
    parse_retry_after,
)
from bridge.adapters.portal_client.client import REFERENCE_SUPPORT, ClientStats, PortalClient
from bridge.adapters.portal_client.settings import PortalSettings
from bridge.adapters.portal_client.wire import (
    encode_batch,
    parse_fingerprints,
    parse_results,
    parse_token,
)

__all__ = [
    "REFERENCE_SUPPORT",
    "ClientStats",
    "Disposition",
    "PortalClient",
    "PortalSettings",
    "Verdict",
    "classify",
    "classify_result",
    "describe",
    "encode_batch",
    "parse_fingerprints",
    "parse_results",
    "parse_retry_after",
    "parse_token",
]
