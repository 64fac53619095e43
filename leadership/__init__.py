"""Lease-based, priority-scored leader elections per scope, with fencing tokens.

The election primitives arrive with their own issue; this package is the stable import name.
"""
