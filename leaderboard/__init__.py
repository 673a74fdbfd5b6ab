"""The leaderboard: run records kept in SQLite, shown as terminal tables or JSON."""
