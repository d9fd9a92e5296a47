"""Teacher labels at scale: scored once, stored and versioned, shared by many students."""
