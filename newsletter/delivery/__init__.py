"""Delivery of one send: personalize, hand to a backend, record in the ledger."""
