"""Commission analytics (issue 7): rollups of the operational tables and their figures."""
