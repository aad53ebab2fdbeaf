"""The operator console (Textual). Nothing outside `erpsync_tui.tui` imports Textual."""
