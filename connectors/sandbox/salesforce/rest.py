"""REST reads: API versions, `query`/`queryAll` with `nextRecordsUrl` paging, `sobjects`
describe calls and `limits` (a mixin of `SalesforcePeer`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connectors.sandbox.salesforce.schema import FieldSpec, ObjectSpec
from connectors.sandbox.salesforce.server import PeerRequest, PeerResponse
from connectors.sandbox.salesforce.soql import FieldPath, Query, parse_soql
from connectors.sandbox.salesforce.store import SalesforceStore
from connectors.sandbox.salesforce.wire import PeerFault, malformed


def _rest_record(
    spec: ObjectSpec,
    record: dict[str, Any],
    paths: Sequence[FieldPath],
    store: SalesforceStore,
    version: str,
) -> dict[str, Any]:
    """One record as REST writes it: `attributes`, then fields, parents as nested records."""
    out: dict[str, Any] = {
        "attributes": {
            "type": spec.name,
            "url": f"/services/data/v{version}/sobjects/{spec.name}/{record['Id']}",
        }
    }
    parents: dict[str, tuple[FieldSpec, list[FieldPath]]] = {}
    for path in paths:
        if not path.hops:
            out[path.field.name] = record.get(path.field.name)
            continue
        hop = path.hops[0]
        name = hop.relationship_name or hop.name
        if name not in parents:
            parents[name] = (hop, [])
            out[name] = None  # keeps the select-list order
        parents[name][1].append(FieldPath(path.hops[1:], path.field))
    for name, (hop, sub_paths) in parents.items():
        parent = store.get(hop.reference_to or "", record.get(hop.name))
        parent_spec = store.spec(hop.reference_to or "")
        if parent is not None and parent_spec is not None:
            out[name] = _rest_record(parent_spec, parent, sub_paths, store, version)
    return out


@dataclass
class Cursor:
    rows: list[dict[str, Any]]
    total: int


class RestApi:
    """`GET /services/data/`, `query`, `queryAll`, `sobjects`, `describe`, `limits`: the
    REST reads of `SalesforcePeer` (its store, lock, cursors and page size)."""

    def _versions(self, request: PeerRequest) -> PeerResponse:
        return PeerResponse.json(
            [
                {
                    "label": f"v{version}.0",
                    "url": f"/services/data/v{version}.0",
                    "version": f"{version}.0",
                }
                for version in range(31, 67)
            ]
        )

    def _parse(self, text: str | None) -> Query:
        if not text:
            raise malformed("ERROR at Row:1:Column:1 unexpected token: '<EOF>'")
        return parse_soql(text, self.store.spec)

    def _page(self, cursor_id: str, offset: int, version: str) -> PeerResponse:
        cursor = self._cursors[cursor_id]
        end = offset + self.page_size
        body: dict[str, Any] = {"totalSize": cursor.total, "done": end >= len(cursor.rows)}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor_id}-{end}"
        body["records"] = cursor.rows[offset:end]
        return PeerResponse.json(body)

    def _query(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            query = self._parse(request.param("q"))
            include_deleted = request.match is not None and request.match["kind"] == "queryAll"
            rows = [
                _rest_record(query.object, record, query.fields, self.store, request.version)
                for record in query.run(self.store, include_deleted=include_deleted)
            ]
            cursor_id = self._next_id("01g")
            self._cursors[cursor_id] = Cursor(rows, len(rows))
            return self._page(cursor_id, 0, request.version)

    def _query_more(self, request: PeerRequest) -> PeerResponse:
        assert request.match is not None
        cursor_id, _, offset = request.match["cursor"].rpartition("-")
        with self.lock:
            if cursor_id not in self._cursors or not offset.isdigit():
                raise PeerFault(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return self._page(cursor_id, int(offset), request.version)

    def _describe_global(self, request: PeerRequest) -> PeerResponse:
        return PeerResponse.json(
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [
                    {
                        "name": spec.name,
                        "label": spec.name,
                        "keyPrefix": spec.key_prefix,
                        "queryable": True,
                        "custom": spec.name.endswith("__c"),
                        "urls": {
                            "sobject": f"/services/data/v{request.version}/sobjects/{spec.name}",
                            "describe": f"/services/data/v{request.version}/sobjects/{spec.name}"
                            "/describe",
                        },
                    }
                    for spec in self.store.schema.values()
                ],
            }
        )

    def _describe(self, request: PeerRequest) -> PeerResponse:
        assert request.match is not None
        spec = self.store.spec(request.match["object"])
        if spec is None:
            raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")
        return PeerResponse.json(
            {
                "name": spec.name,
                "label": spec.name,
                "keyPrefix": spec.key_prefix,
                "queryable": True,
                "custom": spec.name.endswith("__c"),
                "fields": [
                    {
                        "name": field_spec.name,
                        "label": field_spec.name,
                        "type": field_spec.type,
                        "custom": field_spec.name.endswith("__c"),
                        "nillable": field_spec.name not in ("Id", "IsDeleted"),
                        "externalId": field_spec.external_id,
                        "idLookup": field_spec.external_id or field_spec.type == "id",
                        "referenceTo": [field_spec.reference_to] if field_spec.reference_to else [],
                        "relationshipName": field_spec.relationship_name,
                    }
                    for field_spec in spec.fields
                ],
            }
        )

    def _limits(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            return PeerResponse.json(
                {
                    "DailyApiRequests": {
                        "Max": self.api_limit,
                        "Remaining": max(self.api_limit - self.api_used, 0),
                    }
                }
            )
