"""The objects the peer knows, with Field Service names: field and object specs, the
schema of the field-service org, and Salesforce-style 18-character ids."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.UTC
# field types by family: SOQL literals and written values are checked against them
TEXT_TYPES = frozenset({"id", "string", "textarea", "picklist", "reference"})
NUMBER_TYPES = frozenset({"currency", "double", "int"})


@dataclass(frozen=True)
class FieldSpec:
    """One field: its API name and type (`id`, `string`, `textarea`, `picklist`, `reference`,
    `datetime`, `date`, `currency`, `double`, `int`, `boolean`)."""

    name: str
    type: str = "string"
    reference_to: str | None = None
    relationship_name: str | None = None
    # an External ID field: upserts match on it, case-insensitively, as Salesforce does
    external_id: bool = False
    # the Unique attribute: a create or update giving a value another record holds is refused
    # (DUPLICATE_VALUE). Off by default, as in Salesforce: then a plain create *can* make a
    # second record with the same external id, and a later upsert on it is refused
    unique: bool = False
    updateable: bool = True  # False: system fields, refused on writes (INVALID_FIELD_FOR_…)
    picklist: tuple[str, ...] = ()  # a restricted picklist's values (writes are checked)


@dataclass(frozen=True)
class ObjectSpec:
    """One sObject type: API name, the 3-character key prefix of its ids, its fields."""

    name: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]

    def field(self, name: str) -> FieldSpec | None:
        lowered = name.lower()
        return next((spec for spec in self.fields if spec.name.lower() == lowered), None)

    def relationship(self, name: str) -> FieldSpec | None:
        lowered = name.lower()
        return next(
            (
                spec
                for spec in self.fields
                if spec.relationship_name and spec.relationship_name.lower() == lowered
            ),
            None,
        )


def _system_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Id", "id", updateable=False),
        FieldSpec("IsDeleted", "boolean", updateable=False),
        FieldSpec("CreatedDate", "datetime", updateable=False),
        FieldSpec("LastModifiedDate", "datetime", updateable=False),
        FieldSpec("SystemModstamp", "datetime", updateable=False),
    )


WORK_ORDER_STATUSES = (
    "New",
    "In Progress",
    "On Hold",
    "Completed",
    "Cannot Complete",
    "Closed",
    "Canceled",
)


def _account_lookup() -> FieldSpec:
    return FieldSpec("AccountId", "reference", "Account", "Account")


FIELD_SERVICE_SCHEMA: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in (
        ObjectSpec(
            "Account",
            "001",
            (
                *_system_fields(),
                FieldSpec("Name"),
                FieldSpec("BillingCity"),
                FieldSpec("BillingPostalCode"),
            ),
        ),
        ObjectSpec(
            "WorkOrder",
            "0WO",
            (
                *_system_fields(),
                FieldSpec("WorkOrderNumber"),
                FieldSpec("Status", "picklist", picklist=WORK_ORDER_STATUSES),
                FieldSpec("StatusCategory", "picklist"),
                FieldSpec("Priority", "picklist"),
                FieldSpec("Subject"),
                FieldSpec("Description", "textarea"),
                FieldSpec("StartDate", "datetime"),
                FieldSpec("EndDate", "datetime"),
                FieldSpec("Duration", "double"),
                FieldSpec("DurationType", "picklist"),
                _account_lookup(),
                FieldSpec("Street", "textarea"),
                FieldSpec("City"),
                FieldSpec("PostalCode"),
                FieldSpec("BT_Number__c", external_id=True),
                FieldSpec("Montant_Engage__c", "currency"),
                FieldSpec("Urgent__c", "boolean"),
                FieldSpec("Date_Commande__c", "date"),
                FieldSpec("Categorie__c", "picklist"),
                # what the hub pushes back when a work order is completed
                FieldSpec("Hub_External_Id__c", external_id=True),
                FieldSpec("Completed_At__c", "datetime"),
                FieldSpec("Tenant_Absent__c", "boolean"),
                FieldSpec("Rating__c", "double"),
                FieldSpec("Technician__c"),
                FieldSpec("Completion_Ref__c"),
            ),
        ),
        ObjectSpec(
            "ServiceAppointment",
            "08p",
            (
                *_system_fields(),
                FieldSpec("AppointmentNumber"),
                FieldSpec("Status", "picklist"),
                FieldSpec("StatusCategory", "picklist"),
                FieldSpec("Subject"),
                # polymorphic in Salesforce: no relationship traversal offered here
                FieldSpec("ParentRecordId", "reference", "WorkOrder"),
                _account_lookup(),
                FieldSpec("EarliestStartTime", "datetime"),
                FieldSpec("DueDate", "datetime"),
                FieldSpec("SchedStartTime", "datetime"),
                FieldSpec("SchedEndTime", "datetime"),
                FieldSpec("ArrivalWindowStartTime", "datetime"),
                FieldSpec("ArrivalWindowEndTime", "datetime"),
                FieldSpec("ActualStartTime", "datetime"),
                FieldSpec("ActualEndTime", "datetime"),
                FieldSpec("ActualDuration", "double"),
                FieldSpec("Duration", "double"),
                FieldSpec("DurationType", "picklist"),
                FieldSpec("Work_Order__c", "reference", "WorkOrder", "Work_Order__r"),
                FieldSpec("BT_Number__c"),
                FieldSpec("Technicien__c"),
                FieldSpec("Absence_Locataire__c", "boolean"),
                FieldSpec("Note_Locataire__c", "double"),
            ),
        ),
    )
}

_ID_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character id shaped like Salesforce's: prefix, pod, counter, case checksum."""
    short = f"{prefix}5E{number:010d}"
    suffix = ""
    for chunk in range(3):
        bits = sum(
            1 << i for i, char in enumerate(short[chunk * 5 : chunk * 5 + 5]) if char.isupper()
        )
        suffix += _ID_CHECKSUM[bits]
    return short + suffix
