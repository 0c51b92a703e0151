"""Sage sources: Sage X3 objects read through the classic SOAP web service."""
