"""State store: SQLModel tables, database setup, the durable queue and the console's read queries.

SQLite-only statements (PRAGMAs, backup, VACUUM) live in `store/sqlite.py` and nowhere else.
"""

from erpsync_tui.store.db import Database, open_database
from erpsync_tui.store.sqlite import StoreError

__all__ = ["Database", "StoreError", "open_database"]
