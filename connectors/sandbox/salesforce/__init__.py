"""A local HTTPS Salesforce that answers the REST and Bulk API 2.0 calls simple-salesforce makes.

simple-salesforce hard-codes `https://`, so the peer terminates real TLS: at start it makes a CA
and a server certificate for 127.0.0.1/localhost with `trustme`, and exposes the CA bundle
(`peer.ca_path`) for the client's `requests.Session` (`session.verify = peer.ca_path`).

What it answers (paths under `/services/data/v{version}/`, version 20.0 to 66.0):
- `GET query/?q=` and `queryAll/?q=` (queryAll also returns deleted rows), pages of
  `page_size` records with `done`, `totalSize` and a `nextRecordsUrl` *path*
  (`/services/data/v59.0/query/01g…-200`) that `GET` serves next (simple-salesforce joins it
  to `https://{instance}` as is).
- `GET sobjects/`, `GET sobjects/{Object}/describe/`, `GET limits/`, `GET /services/data/`.
- Bulk API 2.0 query jobs: `POST jobs/query` (state `UploadComplete`), `GET jobs/query/{id}`
  (`InProgress` for `bulk_polls_in_progress` polls, then `JobComplete`), `GET
  jobs/query/{id}/results?maxRecords=&locator=` (CSV, every value quoted, pages of at most
  `bulk_page_size` rows, `Sforce-Locator` (`null` on the last page) and
  `Sforce-NumberOfRecords` headers, gzip when the client accepts it), `PATCH` (abort) and
  `DELETE`.
- Writes (`_write`, one code path for all of them; every record answered on its own):
  `POST sobjects/{O}/` creates (201; never deduplicates, so a hub that creates twice shows as
  a duplicate), `PATCH sobjects/{O}/{Id}` updates (204), `PATCH sobjects/{O}/{Ext}/{value}`
  upserts (201 created, 200 `created:false` from API 46.0, 204 before, 300 with the records'
  URLs when 2+ hold the value, 404 when `{Ext}` is not an External ID field);
  `PATCH composite/sobjects/{O}/{Ext}` upserts up to 200 records (each with
  `attributes.type`; 400 `EXCEEDED_ID_LIMIT` above) and answers 200 with one
  `{id, success, errors: [{statusCode, message, fields}], created}` per record in order,
  `allOrNone` honoured (`ALL_OR_NONE_OPERATION_ROLLED_BACK`). External ids match
  case-insensitively; a value held by 2+ records or given twice in one call is refused
  (`DUPLICATE_EXTERNAL_ID`); bad types, read-only fields and restricted picklist values are
  per-record errors; an unknown field is a 400 `INVALID_FIELD` for the whole call.
- Bulk API 2.0 ingest jobs (insert, upsert): `POST jobs/ingest` (Open), `PUT
  jobs/ingest/{id}/batches` (text/csv, 201, once), `PATCH` `UploadComplete` (the rows are
  written then; `GET` shows `InProgress` for `bulk_polls_in_progress` polls, then
  `JobComplete` with `numberRecordsProcessed`/`numberRecordsFailed`) or `Aborted`, `GET
  …/successfulResults` (`sf__Id`, `sf__Created` + the uploaded columns), `…/failedResults`
  (`sf__Id`, `sf__Error` = `CODE:message:fields --`, + columns), `…/unprocessedRecords`, all
  CSV in no particular order. The CSV header may list columns in any order; `#N/A` sets null,
  an empty value leaves the field as it is; an unknown column fails the job.
- Every answer carries `Sforce-Limit-Info: api-usage=N/M`; each authenticated call counts.
- Errors are JSON lists `[{"message", "errorCode"}]`: 401 `INVALID_SESSION_ID`, 403
  `REQUEST_LIMIT_EXCEEDED`, 400 `MALFORMED_QUERY` / `INVALID_FIELD` / `INVALID_TYPE`, 404
  `NOT_FOUND`, 503 `SERVER_UNAVAILABLE`.

SOQL subset: `SELECT f, Rel.f FROM Object [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS
FIRST|LAST], …] [LIMIT n]`, where `cond` combines `f op literal` (`= != <> < <= > >=`),
`f [NOT] IN (…)`, `f LIKE '…'`, `AND`, `OR`, `NOT` and parentheses; literals are quoted strings,
numbers, `true`/`false`/`null`, unquoted dates and UTC date-times (quoting a date-time is refused
as Salesforce does). Names are case-insensitive; answers use the API names' own case. REST
writes date-times as `2026-01-05T10:00:00.000+0000`, Bulk CSV as `2026-01-05T10:00:00.000Z`.

Faults for tests (`peer.faults`): an expired session, the next N calls answering 503, the next
N calls answering only after a delay, and `transient_rate` (each call fails at random, drawn
from `faults.rng`, as 503, 500, 429, 403 REQUEST_LIMIT_EXCEEDED or a stall after the work is
done; `faults.injected` counts them); `peer.exhaust_api_limit()` uses up the daily allocation;
`peer.poison(object, field, value_or_predicate, status_code, message, times=None)` refuses the
matching records on every write (or `times` writes), `peer.lock_rows(...)` is the transient
`UNABLE_TO_LOCK_ROW` case. `peer.calls` counts calls per `METHOD path` (`peer.count(method,
path_prefix)` sums them), `peer.ingest_jobs()` lists the Bulk ingest jobs, and
`peer.store.rows / find / duplicates` read the org back. `demo_store()` is the org the
sandbox serves (`connectors/sandbox/run.py`), with a few deliberately bad records. No dagster
import: this is a plain helper.

The package, one concern per module: `schema.py` (objects and fields), `store.py` (the rows),
`seed.py` (`field_service_store()`, `demo_store()`), `wire.py` (errors, value formats, per-record
results), `soql.py` (the SOQL subset), `server.py` (requests, responses, faults, the TLS
server), `peer.py` (`SalesforcePeer`: life cycle, dispatch, routes), and the APIs it mixes in:
`rest.py` (queries and describes), `writes.py` (sObject and composite writes), `bulk.py` (Bulk
API 2.0 query and ingest jobs). `python -m connectors.sandbox.salesforce` runs a peer.
"""

from connectors.sandbox.salesforce.peer import DEFAULT_SESSION_ID, SalesforcePeer, main
from connectors.sandbox.salesforce.schema import (
    FIELD_SERVICE_SCHEMA,
    FieldSpec,
    ObjectSpec,
    salesforce_id,
)
from connectors.sandbox.salesforce.seed import (
    DEMO_ACCOUNT,
    DEMO_WORK_ORDERS,
    demo_store,
    field_service_store,
)
from connectors.sandbox.salesforce.server import DATA_PATH, PeerFaults, PeerRequest, PeerResponse
from connectors.sandbox.salesforce.soql import parse_soql
from connectors.sandbox.salesforce.store import SalesforceStore
from connectors.sandbox.salesforce.wire import PeerFault, json_text

__all__ = [
    "DATA_PATH",
    "DEFAULT_SESSION_ID",
    "DEMO_ACCOUNT",
    "DEMO_WORK_ORDERS",
    "FIELD_SERVICE_SCHEMA",
    "FieldSpec",
    "ObjectSpec",
    "PeerFault",
    "PeerFaults",
    "PeerRequest",
    "PeerResponse",
    "SalesforcePeer",
    "SalesforceStore",
    "demo_store",
    "field_service_store",
    "json_text",
    "main",
    "parse_soql",
    "salesforce_id",
]
