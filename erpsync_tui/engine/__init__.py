"""The sync engine: pure document logic (`documents`) and the machinery that moves documents between sites.

Submodules are imported explicitly by their users, so `import erpsync_tui.engine` stays cheap.
"""
