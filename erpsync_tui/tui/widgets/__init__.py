"""Console widgets with their own DEFAULT_CSS: the conflict list, the diff, the detail pane."""
