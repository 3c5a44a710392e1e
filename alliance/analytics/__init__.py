"""Commission analytics: rollups of the operational tables and their figures."""
