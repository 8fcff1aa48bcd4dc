"""Feedback: what providers report after sending (webhook events) and its effects."""
