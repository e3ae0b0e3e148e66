"""Test support code (real daemons on loopback): see procs.py."""
