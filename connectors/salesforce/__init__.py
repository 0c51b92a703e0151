"""Salesforce: read objects through simple-salesforce (REST or Bulk API 2.0) as text tables.

Import what you need from its modules (`client`, `models`, `kinds`, `push`): the package itself
imports nothing, so a datafix that names no Salesforce source or sink never loads
simple-salesforce and zeep (~0.2-0.3 s of every run's start).
"""
