//! The private PostgreSQL that confab runs when no DATABASE_URL is set.
