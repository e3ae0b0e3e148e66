"""engage-milter: the MTA adapter that rewrites messages for open and click tracking."""
