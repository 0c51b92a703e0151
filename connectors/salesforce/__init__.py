"""Salesforce: read objects through simple-salesforce (REST or Bulk API 2.0) as text tables."""

from connectors.salesforce.client import (
    DEFAULT_API_VERSION,
    SalesforceLimitError,
    SalesforceQueryError,
    SalesforceSessionError,
    SalesforceUnavailableError,
    connect,
    read_salesforce,
)
from connectors.salesforce.models import RetryPolicy, SalesforceAuth

__all__ = [
    "DEFAULT_API_VERSION",
    "RetryPolicy",
    "SalesforceAuth",
    "SalesforceLimitError",
    "SalesforceQueryError",
    "SalesforceSessionError",
    "SalesforceUnavailableError",
    "connect",
    "read_salesforce",
]
