"""erpsync-tui: keep two ERPNext/Frappe sites in bidirectional sync, and watch it from a terminal."""

__version__ = "0.1.0"
