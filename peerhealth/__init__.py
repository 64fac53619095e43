"""Per-peer lease health tracking and backpressure signals (a leaf library).

The tracker and monitor arrive with their own issue; this package is the stable import name.
"""
