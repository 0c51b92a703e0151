"""Derive what goes back out from one landlord's canonical tables (`schemas.outgoing`).

- commitments: each works order's committed amount plus its accepted additional-works quotes;
- invoices: invoices with their BT number, a proforma sent as a regularisation request;
- completions: completion reports, with the status of the order they complete;
- actions: the arrears-prevention actions insight keeps in `prevention_actions`.

Only rows still present at the source (`deleted_at` empty) are read, and only *confirmed*
records come out: the landlord's `push.confirmed` (or the defaults in `schemas.outgoing`) says
which statuses and flags let a record out. Money stays integer cents (pandas `Int64`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from connectors.lazy import pd
from pipelines.lib.warehouse import Warehouse
from schemas.canonical import ENTITIES, ColumnType
from schemas.outgoing import OUTGOING
from schemas.tables import CANONICAL_TABLES, prevention_actions

__all__ = ["SOURCE_ROWS", "derive"]

PARIS = ZoneInfo("Europe/Paris")
SOURCE_ROWS = "source_rows"  # lineage column: the canonical rows a record was derived from

Confirmed = Mapping[str, Sequence[str | bool | int]]


def _read(warehouse: Warehouse, entity: str, landlord_id: str) -> pd.DataFrame:
    """The landlord's live rows of one canonical table, typed for exact arithmetic."""
    table = CANONICAL_TABLES[entity]
    spec = ENTITIES[entity]
    columns = [table.c[name] for name in spec.column_names]
    query = sa.select(*columns).where(
        table.c.landlord_id == landlord_id, table.c.deleted_at.is_(None)
    )
    with warehouse.engine.connect() as conn:
        rows = conn.execute(query).all()
    names = list(spec.column_names)
    columns_of_values = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    frame = pd.DataFrame(
        {
            name: pd.Series(values, dtype=object)
            for name, values in zip(names, columns_of_values, strict=True)
        }
    )
    for column in spec.columns:
        if column.type in (ColumnType.CENTS, ColumnType.INTEGER):
            frame[column.name] = frame[column.name].astype("Int64")
    return frame


def _commitments(warehouse: Warehouse, landlord_id: str, confirmed: Confirmed) -> pd.DataFrame:
    orders = _read(warehouse, "work_orders", landlord_id)
    quotes = _read(warehouse, "quotes", landlord_id)
    counted = [str(s) for s in confirmed.get("quote_status", ("accepted",))]
    extra = quotes[
        quotes["additional_works"].map(lambda v: v is True) & quotes["status"].isin(counted)
    ]
    by_order = extra.groupby("order_ref", sort=False).agg(
        additional_cents=("amount_cents", "sum"),
        accepted_quotes=("quote_ref", "count"),
        last_accepted_date=(
            "accepted_date",
            lambda s: s.dropna().max() if s.notna().any() else None,
        ),
        quote_refs=("quote_ref", lambda s: ",".join(sorted(s))),
    )
    out = orders.merge(by_order, how="left", left_on="order_ref", right_index=True)
    out["base_cents"] = out["committed_cents"].fillna(0).astype("Int64")
    out["additional_cents"] = out["additional_cents"].fillna(0).astype("Int64")
    out["accepted_quotes"] = out["accepted_quotes"].fillna(0).astype("Int64")
    out["amount_cents"] = (out["base_cents"] + out["additional_cents"]).astype("Int64")
    lineage = "work_orders:" + out["order_ref"].astype(str)
    quote_refs = out["quote_refs"].fillna("")
    out[SOURCE_ROWS] = lineage.where(quote_refs == "", lineage + ";quotes:" + quote_refs)
    out["last_accepted_date"] = out["last_accepted_date"].astype(object)
    return out


def _order_details(warehouse: Warehouse, landlord_id: str) -> pd.DataFrame:
    orders = _read(warehouse, "work_orders", landlord_id)
    return orders[["order_ref", "contractor", "dwelling_ref", "status"]].rename(
        columns={"status": "order_status"}
    )


def _invoices(warehouse: Warehouse, landlord_id: str, _confirmed: Confirmed) -> pd.DataFrame:
    invoices = _read(warehouse, "invoices", landlord_id)
    out = invoices.merge(_order_details(warehouse, landlord_id), how="left", on="order_ref")
    out["document"] = out["kind"].map({"final": "invoice", "proforma": "regularisation_request"})
    out["total_cents"] = (out["amount_cents"] + out["vat_cents"].fillna(0)).astype("Int64")
    out[SOURCE_ROWS] = "invoices:" + out["invoice_ref"].astype(str)
    return out


def _completions(warehouse: Warehouse, landlord_id: str, _confirmed: Confirmed) -> pd.DataFrame:
    completions = _read(warehouse, "completions", landlord_id)
    out = completions.merge(_order_details(warehouse, landlord_id), how="left", on="order_ref")
    out["completed_date"] = out["completed_at"].map(
        lambda at: None if at is None or pd.isna(at) else _paris(at).date()
    )
    out[SOURCE_ROWS] = "completions:" + out["completion_ref"].astype(str)
    return out


def _paris(at: object) -> pd.Timestamp:
    stamp = pd.Timestamp(at)
    if stamp.tzinfo is None:  # SQLite hands back naive UTC
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert(PARIS)


def _actions(warehouse: Warehouse, landlord_id: str, _confirmed: Confirmed) -> pd.DataFrame:
    names = list(OUTGOING["actions"].column_names)
    table = prevention_actions
    query = sa.select(*[table.c[name] for name in names]).where(table.c.landlord_id == landlord_id)
    with warehouse.engine.connect() as conn:
        rows = conn.execute(query).all()
    out = pd.DataFrame(
        {name: pd.Series([row[i] for row in rows], dtype=object) for i, name in enumerate(names)}
    )
    out["balance_cents"] = out["balance_cents"].astype("Int64")
    out[SOURCE_ROWS] = "prevention_actions:" + out["action_key"].astype(str)
    return out


_BUILDERS = {
    "commitments": _commitments,
    "invoices": _invoices,
    "completions": _completions,
    "actions": _actions,
}


def confirmed_rule(name: str, confirmed: Mapping[str, Confirmed] | None) -> dict[str, list]:
    """The confirmed rule of `name`: the datafix's when it gives one, else the default."""
    spec = OUTGOING[name]
    given = (confirmed or {}).get(name)
    if given is None:
        return {column: list(values) for column, values in spec.confirmed_default.items()}
    return {column: list(values) for column, values in given.items()}


def derive(
    warehouse: Warehouse,
    landlord_id: str,
    name: str,
    confirmed: Mapping[str, Confirmed] | None = None,
) -> pd.DataFrame:
    """The confirmed outgoing records `name` of one landlord, one row per key.

    Columns: those of `schemas.outgoing.OUTGOING[name]` plus `source_rows` (lineage). Values
    are Python objects (`None` for blanks); cents and counts are `Int64`.
    """
    spec = OUTGOING[name]
    rule = confirmed_rule(name, confirmed)
    out = _BUILDERS[name](warehouse, landlord_id, rule)
    keep = pd.Series(True, index=out.index)
    for column, allowed in rule.items():
        if column in spec.confirmed_options:
            continue
        keep &= out[column].map(lambda value, allowed=allowed: _allowed(value, allowed))
    out = out.loc[keep, [*spec.column_names, SOURCE_ROWS]]
    return out.sort_values(spec.key, kind="stable").reset_index(drop=True)


def _allowed(value: object, allowed: Sequence[object]) -> bool:
    if value is None or value is pd.NA:
        return False
    return any(value == candidate for candidate in allowed)
