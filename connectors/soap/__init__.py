"""SOAP sources: a hardened zeep client reading a landlord ERP's operations into a RawTable."""
