"""One module per scenario; each ``run`` adds its figures to the report."""
