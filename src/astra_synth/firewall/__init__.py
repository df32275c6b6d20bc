"""The contamination firewall: the export-time gate that keeps benchmark items out of training data."""
