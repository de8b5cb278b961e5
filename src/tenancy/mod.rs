//! The multi-tenant business layer: API keys served from memory, quotas and rate limits,
//! prices and charging, the database-backed account pool, and the admin, user and agent APIs.

pub mod keys;
pub mod limits;
pub mod pricing;
pub mod state;
