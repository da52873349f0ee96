"""Bulk reconciliation: statement files read, answered row by row in chunks, written back."""
