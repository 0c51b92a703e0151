"""One entry point per datafix sink kind: build the connector a landlord's sink names.

Each kind's connector lives in `connectors/<system>/` (`sql/push.py`, `soap/push.py`,
`sage/push.py`, `sage/sage100.py`, `salesforce/push.py`); this module only turns one sink of
one landlord's datafix (with `${VARIABLES}` resolved) into that connector. A sink is built from
the landlord's own datafix and nothing else, so a landlord's records cannot reach a peer another
landlord declared.

The outbox retries whole calls itself, reading the peer back between attempts, so the SOAP and
Sage X3 connectors are built with a single attempt each (no retries nested in retries).
"""

from __future__ import annotations

from pathlib import Path

import requests

from connectors.delivery import Sink
from connectors.retry import RetryPolicy
from connectors.sage.push import SageX3Sink
from connectors.sage.sage100 import Sage100FileSink
from connectors.salesforce.models import SalesforceAuth
from connectors.salesforce.push import SalesforceSink
from connectors.soap.push import SoapSink
from connectors.sql.push import SqlSink
from pipelines.lib.datafixes import LoadedDatafix, resolve_env
from schemas.canonical import ColumnType
from schemas.datafix import Sage100FileSink as Sage100FileSpec
from schemas.datafix import SageX3Sink as SageX3Spec
from schemas.datafix import SalesforceSink as SalesforceSpec
from schemas.datafix import SinkBase
from schemas.datafix import SoapSink as SoapSpec
from schemas.datafix import SqlSink as SqlSpec
from schemas.outgoing import OUTGOING

__all__ = ["build_sink"]

ONE_ATTEMPT = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)


def build_sink(loaded: LoadedDatafix, name: str) -> Sink:
    """The connector for sink `name` of the landlord's datafix (nothing connects yet)."""
    push = loaded.datafix.push
    assert push is not None and name in push.sinks, name
    spec = push.sinks[name]
    if isinstance(spec, SqlSpec):
        return SqlSink(
            name,
            url=None if spec.url is None else resolve_env(spec.url),
            odbc=None if spec.connection is None else resolve_env(spec.connection),
            table=spec.table if spec.db_schema is None else f"{spec.db_schema}.{spec.table}",
            key_column=spec.key_column,
            idempotency_column=spec.idempotency_column,
            batch_size=spec.batch_size or 500,
            timeout=int(spec.timeout),
        )
    if isinstance(spec, SoapSpec):
        auth = None
        if spec.username is not None and spec.password is not None:
            auth = (resolve_env(spec.username), resolve_env(spec.password))
        read_back = spec.read_back
        return SoapSink(
            name,
            wsdl=resolve_env(spec.wsdl),
            operation=spec.operation,
            mode=spec.mode,
            idempotency_field=spec.idempotency_field,
            reference_field=spec.reference_field,
            results_path=spec.results.path,
            result_reference=spec.results.reference,
            result_status=spec.results.status,
            result_id=spec.results.id,
            result_message=spec.results.message,
            accepted=tuple(spec.results.accepted),
            read_back_operation=None if read_back is None else read_back.operation,
            read_back_path=None if read_back is None else read_back.path,
            held_id="ErpId" if read_back is None else read_back.id,
            held_idempotency_key="IdempotencyKey"
            if read_back is None
            else read_back.idempotency_key,
            max_batch=spec.batch_size or 100,
            address=None if spec.address is None else resolve_env(spec.address),
            timeout=spec.timeout,
            operation_timeout=spec.operation_timeout,
            auth=auth,
            retry=ONE_ATTEMPT,
        )
    if isinstance(spec, SageX3Spec):
        return SageX3Sink(
            name,
            wsdl=resolve_env(spec.wsdl),
            pool_alias=resolve_env(spec.pool_alias),
            language=spec.language,
            user=None if spec.username is None else resolve_env(spec.username),
            password=None if spec.password is None else resolve_env(spec.password),
            public_name=spec.public_name,
            key_field=spec.key_field,
            group=spec.group,
            field_groups=dict(spec.field_groups) or None,
            reference_field=spec.reference_field,
            version_field=spec.version_field,
            lines_table=spec.lines_table,
            max_batch=spec.batch_size or 50,
            address=None if spec.address is None else resolve_env(spec.address),
            timeout=spec.timeout,
            operation_timeout=spec.operation_timeout,
            retry=ONE_ATTEMPT,
        )
    if isinstance(spec, Sage100FileSpec):
        return Sage100FileSink(
            name,
            drop_folder=Path(resolve_env(spec.folder)).expanduser(),
            file_prefix=spec.file_prefix,
            columns=list(spec.fields),
            format=spec.format,
            amount_columns=_cents_fields(spec),
            date_format=spec.date_format,
            delimiter=spec.delimiter,
            encoding=spec.encoding,
            archive_folders=[Path(resolve_env(f)).expanduser() for f in spec.archive_folders],
            idempotency_column=spec.idempotency_column,
            max_rows_per_file=spec.batch_size or spec.rows_per_file,
        )
    if isinstance(spec, SalesforceSpec):
        values = {k: resolve_env(v) for k, v in spec.auth.model_dump().items() if v is not None}
        session = None
        if spec.ca_bundle is not None:
            session = requests.Session()
            session.verify = resolve_env(spec.ca_bundle)
        return SalesforceSink(
            name,
            SalesforceAuth(**values),
            object_name=spec.object,
            external_id_field=spec.external_id_field,
            ca_bundle=None if spec.ca_bundle is None else resolve_env(spec.ca_bundle),
            bulk_threshold=spec.bulk_threshold,
            timeout=spec.timeout,
            session=session,
        )
    raise AssertionError(f"unknown sink kind {spec.kind}")


def _cents_fields(spec: SinkBase) -> list[str]:
    """Target fields carrying whole cents (`as: native` of an amount): the file shows euros."""
    columns = OUTGOING[spec.sends]
    return [
        target
        for target, rule in spec.fields.items()
        if rule.from_ is not None
        and rule.as_ == "native"
        and rule.map is None
        and columns.column(rule.from_).type is ColumnType.CENTS
    ]
