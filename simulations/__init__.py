"""Scenarios that run whole meshes in virtual time, shared by tests and benchmarks."""
