//! Strict in-memory store for engine tests.
