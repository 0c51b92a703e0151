"""Insight: the morning computations per landlord, downstream of the loads.

Balances and ageing, tenant profiles, prevention actions, works tracking and SLA, alerts and the
morning report live here as Dagster assets, partitioned by landlord like every stage. Their
set-based SQL lives in the plain module `pipelines.lib.insight` (SQLAlchemy Core, the same SQL on
SQLite and PostgreSQL), so it is tested without Dagster; the assets only run it and record the
figures.
"""
