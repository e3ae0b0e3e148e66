"""Counts per hour (the aggregates written by the store), the metrics API over them and
the rebuild from the event log."""
