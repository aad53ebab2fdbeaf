"""The console's screens, one per area; each polls its own data in a thread worker."""
