"""sObject writes: `POST sobjects/{O}/` creates, `PATCH sobjects/{O}/{Id}` updates,
`PATCH sobjects/{O}/{Ext}/{value}` upserts and `PATCH composite/sobjects/{O}/{Ext}`
collections; one code path (`_write`) also serves Bulk 2.0 ingest jobs (a mixin of
`SalesforcePeer`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from connectors.sandbox.salesforce.schema import FieldSpec, ObjectSpec
from connectors.sandbox.salesforce.server import PeerRequest, PeerResponse
from connectors.sandbox.salesforce.store import match_key
from connectors.sandbox.salesforce.wire import ItemResult, PeerFault, item_error, write_value


class SObjectWrites:
    """Single-record and composite-collection writes of `SalesforcePeer`, and `_write`,
    which every write goes through (Bulk 2.0 ingest included)."""

    def _object_spec(self, name: str) -> ObjectSpec:
        spec = self.store.spec(name)
        if spec is None:
            raise PeerFault(
                404, "NOT_FOUND", f"The requested resource does not exist: sObject type {name}"
            )
        return spec

    def _external_id(self, spec: ObjectSpec, name: str) -> FieldSpec:
        field_spec = spec.field(name)
        if field_spec is None or not (field_spec.external_id or field_spec.type == "id"):
            raise PeerFault(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {name}",
            )
        return field_spec

    def _write(
        self,
        spec: ObjectSpec,
        items: Sequence[Mapping[str, Any]],
        *,
        external_id: FieldSpec | None,
        all_or_none: bool = False,
        record_id: str | None = None,
    ) -> list[ItemResult]:
        """Create (no `external_id`), upsert (matching on `external_id`) or update (`record_id`)
        `items`, each a {field name: value as written}; every item answered on its own.
        Unknown fields are a PeerFault (400 INVALID_FIELD) for the whole call. Call under the
        lock."""
        for item in items:
            for name in item:
                if spec.field(name) is None:
                    raise PeerFault(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name}' on sobject of type {spec.name}",
                    )
        index = self.store.index(spec.name, external_id.name) if external_id else {}
        plans: list[tuple[ItemResult, dict[str, Any]]] = []
        seen: Counter[Any] = Counter()
        typed_items: list[dict[str, Any]] = []
        results: list[ItemResult] = []
        for item in items:
            result = ItemResult()
            typed: dict[str, Any] = {}
            for name, value in item.items():
                field_spec = spec.field(name)
                assert field_spec is not None
                if not field_spec.updateable and not (
                    external_id is not None and field_spec is external_id
                ):
                    result.errors.append(
                        item_error(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            f"Unable to create/update fields: {field_spec.name}. Please check"
                            " the security settings of this field and verify that it is"
                            " read/write for your profile or permission set.",
                            [field_spec.name],
                        )
                    )
                    continue
                try:
                    typed[field_spec.name] = write_value(field_spec, value)
                except (ValueError, TypeError, ArithmeticError):
                    result.errors.append(
                        item_error(
                            "INVALID_TYPE_ON_FIELD_IN_RECORD",
                            f"{field_spec.name}: value not of required type: {value}",
                            [field_spec.name],
                        )
                    )
                    continue
                if (
                    field_spec.picklist
                    and typed[field_spec.name] is not None
                    and typed[field_spec.name] not in field_spec.picklist
                ):
                    result.errors.append(
                        item_error(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            f"{field_spec.name}: bad value for restricted picklist field: {value}",
                            [field_spec.name],
                        )
                    )
            if external_id is not None and typed.get(external_id.name) is not None:
                seen[match_key(typed[external_id.name])] += 1
            typed_items.append(typed)
            results.append(result)
        for typed, result in zip(typed_items, results, strict=True):
            key = match_key(typed[external_id.name]) if external_id is not None else None
            if external_id is not None and not result.errors:
                if key is None:
                    result.errors.append(
                        item_error(
                            "MISSING_ARGUMENT",
                            f"{external_id.name} not specified",
                            [external_id.name],
                        )
                    )
                elif seen[key] > 1:
                    result.errors.append(
                        item_error(
                            "DUPLICATE_EXTERNAL_ID",
                            f"Duplicate external id specified: {typed[external_id.name]}",
                            [external_id.name],
                        )
                    )
                elif len(index.get(key, ())) > 1:
                    result.errors.append(
                        item_error(
                            "DUPLICATE_EXTERNAL_ID",
                            f"{external_id.name}: more than one record found for external id"
                            f" field: [{', '.join(index[key])}]",
                            [external_id.name],
                        )
                    )
            if not result.errors:
                for poison in self.poisons:
                    if poison.object == spec.name and poison.hits(typed.get(poison.field)):
                        if poison.times is not None:
                            poison.times -= 1
                        result.errors.append(item_error(poison.code, poison.message))
                        break
            if not result.errors:
                for field_spec in spec.fields:
                    value = typed.get(field_spec.name)
                    if not field_spec.unique or value is None:
                        continue
                    holders = self.store.index(spec.name, field_spec.name).get(match_key(value), [])
                    target = record_id or (index.get(key, [None])[0] if key else None)
                    if [holder for holder in holders if holder != target]:
                        result.errors.append(
                            item_error(
                                "DUPLICATE_VALUE",
                                f"duplicate value found: {field_spec.name} duplicates value on"
                                f" record with id: {holders[0]}",
                                [field_spec.name],
                            )
                        )
            plans.append((result, typed))
        if all_or_none and any(result.errors for result, _ in plans):
            for result, _ in plans:
                if not result.errors:
                    result.errors.append(
                        item_error(
                            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "Record rolled back because not all records were valid and the"
                            " request was using AllOrNone header",
                        )
                    )
            return [result for result, _ in plans]
        for result, typed in plans:
            if result.errors:
                continue
            target = record_id
            if external_id is not None:
                matches = index.get(match_key(typed[external_id.name]), [])
                target = matches[0] if matches else None
            if target is None:
                result.id = self.store.insert(spec.name, typed)
                result.created = True
            else:
                self.store.update(spec.name, target, typed)
                result.id, result.created = target, False
        return [result for result, _ in plans]

    @staticmethod
    def _write_body(request: PeerRequest) -> Any:
        try:
            return json.loads(request.body or b"null", parse_float=Decimal)
        except ValueError:
            raise PeerFault(400, "JSON_PARSER_ERROR", "Unexpected character in the body") from None

    @staticmethod
    def _refusal(result: ItemResult) -> PeerResponse:
        """A single call's per-item errors as Salesforce answers them: 400 and a JSON list."""
        return PeerResponse.json(
            [
                {
                    "message": error["message"],
                    "errorCode": error["statusCode"],
                    **({"fields": error["fields"]} if error["fields"] else {}),
                }
                for error in result.errors
            ],
            status=400,
        )

    def _single_record(self, request: PeerRequest) -> dict[str, Any]:
        body = self._write_body(request)
        if not isinstance(body, dict):
            raise PeerFault(400, "JSON_PARSER_ERROR", "The body must be a JSON object")
        body.pop("attributes", None)
        return body

    def _create_one(self, request: PeerRequest) -> PeerResponse:
        """`POST sobjects/{O}/`: always a new record, duplicates included (no deduplication)."""
        assert request.match is not None
        with self.lock:
            spec = self._object_spec(request.match["object"])
            (result,) = self._write(spec, [self._single_record(request)], external_id=None)
        if result.errors:
            return self._refusal(result)
        return PeerResponse.json({"id": result.id, "success": True, "errors": []}, status=201)

    def _update_one(self, request: PeerRequest) -> PeerResponse:
        """`PATCH sobjects/{O}/{Id}` → 204."""
        assert request.match is not None
        with self.lock:
            spec = self._object_spec(request.match["object"])
            record = self.store.get(spec.name, request.match["id"])
            if record is None or record["IsDeleted"]:
                raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")
            (result,) = self._write(
                spec, [self._single_record(request)], external_id=None, record_id=record["Id"]
            )
        return self._refusal(result) if result.errors else PeerResponse(204, None)

    def _upsert_one(self, request: PeerRequest) -> PeerResponse:
        """`PATCH sobjects/{O}/{ExtField}/{value}`: 201 created, 200 `created:false` (API ≥ 46;
        204 before), 300 with the matching records' URLs when 2+ hold the value."""
        assert request.match is not None
        value = unquote(request.match["value"])
        with self.lock:
            spec = self._object_spec(request.match["object"])
            external_id = self._external_id(spec, request.match["field"])
            record = self._single_record(request)
            record = {
                name: item
                for name, item in record.items()
                if name.lower() != external_id.name.lower()
            }
            matches = self.store.index(spec.name, external_id.name).get(
                match_key(write_value(external_id, value)), []
            )
            if len(matches) > 1:
                return PeerResponse.json(
                    [
                        f"/services/data/v{request.version}/sobjects/{spec.name}/{match}"
                        for match in matches
                    ],
                    status=300,
                )
            (result,) = self._write(
                spec, [{external_id.name: value, **record}], external_id=external_id
            )
        if result.errors:
            return self._refusal(result)
        if result.created:
            return PeerResponse.json(result.json(), status=201)
        if float(request.version) < 46.0:
            return PeerResponse(204, None)
        return PeerResponse.json(result.json())

    def _upsert_collection(self, request: PeerRequest) -> PeerResponse:
        """`PATCH composite/sobjects/{O}/{ExtField}`: ≤ 200 records, 200 with one result per
        record in request order; `allOrNone` honoured."""
        assert request.match is not None
        body = self._write_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise PeerFault(400, "JSON_PARSER_ERROR", "The body must have a records list")
        records = body["records"]
        if len(records) > 200:
            raise PeerFault(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        with self.lock:
            spec = self._object_spec(request.match["object"])
            external_id = self._external_id(spec, request.match["field"])
            items = []
            for record in records:
                attributes = record.get("attributes") if isinstance(record, dict) else None
                kind = attributes.get("type") if isinstance(attributes, dict) else None
                if not isinstance(kind, str) or kind.lower() != spec.name.lower():
                    raise PeerFault(
                        400,
                        "INVALID_TYPE",
                        f"Each record must have attributes.type {spec.name} in this call",
                    )
                items.append(
                    {name: value for name, value in record.items() if name != "attributes"}
                )
            results = self._write(
                spec, items, external_id=external_id, all_or_none=bool(body.get("allOrNone"))
            )
        return PeerResponse.json([result.json() for result in results])
