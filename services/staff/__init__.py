"""Staff: console sessions, the permission matrix, staff accounts and what the console's dashboard shows.
No HTTP here; `api/console` is the edge."""
