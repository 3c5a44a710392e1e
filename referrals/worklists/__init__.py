"""Reading worklists: what each reader and pool owes, sorted by priority and time left."""
