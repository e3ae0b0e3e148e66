"""Who clicked: the rules (machines.conf), the judge run on each click, the recompute
over stored events and its CLI."""
