"""Salesforce: read objects through simple-salesforce (REST or Bulk API 2.0) as text tables."""

from connectors.retry import RetryPolicy
from connectors.salesforce.client import (
    DEFAULT_API_VERSION,
    SalesforceLimitError,
    SalesforceQueryError,
    SalesforceSessionError,
    SalesforceUnavailableError,
    connect,
    read_salesforce,
)
from connectors.salesforce.models import SALESFORCE_RETRY, SalesforceAuth

__all__ = [
    "DEFAULT_API_VERSION",
    "SALESFORCE_RETRY",
    "RetryPolicy",
    "SalesforceAuth",
    "SalesforceLimitError",
    "SalesforceQueryError",
    "SalesforceSessionError",
    "SalesforceUnavailableError",
    "connect",
    "read_salesforce",
]
