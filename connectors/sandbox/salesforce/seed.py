"""Demo data: social landlords' maintenance works in Field Service objects (the tests'
org, `field_service_store()`, and the sandbox's, `demo_store()`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from connectors.sandbox.demo_calendar import DemoCalendar
from connectors.sandbox.salesforce.schema import UTC, WORK_ORDER_STATUSES
from connectors.sandbox.salesforce.store import SalesforceStore

_APPOINTMENT_STATUSES = (
    "None",
    "Scheduled",
    "Dispatched",
    "In Progress",
    "Completed",
    "Cannot Complete",
    "Canceled",
)
_SUBJECTS = (
    "Recherche de fuite, salle de bains",
    "Dépannage chaudière",
    'Remplacement "cumulus" 200 L',
    "Porte palière; serrure bloquée",
    "Débouchage colonne d’eaux usées",
    "VMC bruyante",
)
_CATEGORIES = ("dépannage", "recherche de fuite", "travaux programmés", "entretien")
_ACCOUNTS = (
    ("Loire Habitat Social", "Nantes", "44000"),
    ('Opale "Logement"', "Boulogne-sur-Mer", "62200"),
    ("Cité des Jardins, Lyon", "Lyon", "69007"),
    ("Résidences de l'Estuaire", "Saint-Nazaire", "44600"),
    ("Habitat Côte d’Opale", "Calais", "62100"),
)
_TECHNICIANS = ("Léa Martin", "Karim Benali", "Sophie O'Neill", "Jean-Luc Durand")
_MODSTAMP_START = dt.datetime(2025, 12, 1, tzinfo=UTC)


def field_service_store(work_orders: int = 450, *, appointments_every: int = 2) -> SalesforceStore:
    """A deterministic org: 5 accounts, `work_orders` work orders (one every 97 deleted), and a
    service appointment for every `appointments_every`-th work order.

    Work order `i` has `SystemModstamp` 2025-12-01 + 3 h × i (so `i = 248` is exactly
    2026-01-01T00:00:00Z), amounts as exact decimals (some null), an urgent flag, an order date,
    texts with commas, quotes, semicolons, accents and (every tenth) a line break.
    """
    store = SalesforceStore()
    account_ids = []
    for number, (name, city, postcode) in enumerate(_ACCOUNTS):
        stamp = _MODSTAMP_START - dt.timedelta(days=30 - number)
        account_ids.append(
            store.insert(
                "Account",
                {
                    "Name": name,
                    "BillingCity": city,
                    "BillingPostalCode": postcode,
                    "CreatedDate": stamp,
                    "LastModifiedDate": stamp,
                    "SystemModstamp": stamp,
                },
            )
        )
    appointment = 0
    for i in range(work_orders):
        stamp = _MODSTAMP_START + dt.timedelta(hours=3 * i)
        start = stamp + dt.timedelta(days=2, minutes=30 * (i % 4))
        account_index = i % len(_ACCOUNTS)
        status = WORK_ORDER_STATUSES[i % len(WORK_ORDER_STATUSES)]
        amount = None if i % 13 == 5 else Decimal(f"{(i * 137) % 9000 + 50}.{(i * 7) % 100:02d}")
        order_id = store.insert(
            "WorkOrder",
            {
                "WorkOrderNumber": f"{i + 1:08d}",
                "Status": status,
                "StatusCategory": status.replace(" ", ""),
                "Priority": ("Low", "Medium", "High", "Critical")[i % 4],
                "Subject": f"{_SUBJECTS[i % len(_SUBJECTS)]} — logement {i % 97 + 1}",
                "Description": "Fuite sous l'évier\nAccès par le gardien" if i % 10 == 0 else None,
                "StartDate": start,
                "EndDate": None if i % 3 == 0 else start + dt.timedelta(hours=2),
                "Duration": Decimal("1.5") if i % 2 else Decimal("2"),
                "DurationType": "Hours",
                "AccountId": None if i % 11 == 7 else account_ids[account_index],
                "Street": f"{i % 40 + 1} rue des Lilas",
                "City": _ACCOUNTS[account_index][1],
                "PostalCode": _ACCOUNTS[account_index][2],
                "BT_Number__c": f"BT{345678 + i}",
                "Montant_Engage__c": amount,
                "Urgent__c": i % 5 == 0,
                "Date_Commande__c": dt.date(2025, 11, 20) + dt.timedelta(days=i // 3),
                "Categorie__c": _CATEGORIES[i % len(_CATEGORIES)],
                "IsDeleted": i % 97 == 96,
                "CreatedDate": stamp - dt.timedelta(days=1),
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            },
        )
        if i % appointments_every:
            continue
        appointment += 1
        done = status in ("Completed", "Closed")
        store.insert(
            "ServiceAppointment",
            {
                "AppointmentNumber": f"SA-{appointment:04d}",
                "Status": "Completed" if done else _APPOINTMENT_STATUSES[i % 7],
                "StatusCategory": "Completed" if done else _APPOINTMENT_STATUSES[i % 7],
                "Subject": f"Intervention BT{345678 + i}",
                "ParentRecordId": order_id,
                "AccountId": None if i % 11 == 7 else account_ids[account_index],
                "EarliestStartTime": stamp,
                "DueDate": stamp + dt.timedelta(days=7),
                "SchedStartTime": start,
                "SchedEndTime": start + dt.timedelta(hours=2),
                "ArrivalWindowStartTime": start - dt.timedelta(hours=1),
                "ArrivalWindowEndTime": start + dt.timedelta(hours=1),
                "ActualStartTime": start + dt.timedelta(minutes=10) if done else None,
                "ActualEndTime": start + dt.timedelta(minutes=95) if done else None,
                "ActualDuration": Decimal("85") if done else None,
                "Duration": Decimal("2"),
                "DurationType": "Hours",
                "Work_Order__c": order_id,
                "BT_Number__c": f"BT{345678 + i}",
                "Technicien__c": _TECHNICIANS[i % len(_TECHNICIANS)],
                "Absence_Locataire__c": i % 9 == 4,
                "Note_Locataire__c": Decimal(i % 5 + 1) if done else None,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp + dt.timedelta(minutes=1),
            },
        )
    return store


DEMO_WORK_ORDERS = 120
DEMO_ACCOUNT = "Résidences de l'Estuaire"


def demo_store(calendar: DemoCalendar | None = None) -> SalesforceStore:
    """The org the sandbox serves (`datafix sandbox`, `datafix demo`): `field_service_store`
    with `DEMO_WORK_ORDERS` work orders, plus one deliberately bad work order of
    `DEMO_ACCOUNT`, with no `BT_Number__c` (the landlord's order number was never typed in).

    The store has bad records of its own, which the demo's quarantine shows too: work orders
    `Cannot Complete` (a status the hub has no value for), and their appointments marked
    `Completed` with no `ActualEndTime`. Identical from one call to the next (every date is
    fixed); with a `calendar` (the sandbox's: `datafix demo`) every date is moved to its demo
    day like the demo files' (`connectors.sandbox.demo_calendar`).
    """
    store = field_service_store(DEMO_WORK_ORDERS)
    account_id = next(
        record_id
        for record_id, record in store.records["Account"].items()
        if record["Name"] == DEMO_ACCOUNT
    )
    stamp = _MODSTAMP_START + dt.timedelta(hours=3 * DEMO_WORK_ORDERS)
    store.insert(
        "WorkOrder",
        {
            "WorkOrderNumber": f"{DEMO_WORK_ORDERS + 1:08d}",
            "Status": "New",
            "StatusCategory": "New",
            "Priority": "High",
            "Subject": "Dégât des eaux, plafond de la cuisine",
            "AccountId": account_id,
            "City": "Saint-Nazaire",
            "PostalCode": "44600",
            "BT_Number__c": None,
            "Montant_Engage__c": Decimal("640.00"),
            "Date_Commande__c": dt.date(2026, 1, 5),
            "Categorie__c": "dépannage",
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        },
    )
    if calendar is not None:
        for records in store.records.values():
            for record in records.values():
                record.update(calendar.value(record))
    return store
