//! The kiro-gateway application: configuration, credentials, the HTTP server and the fake Kiro
//! upstream used by tests, benches and the demo mode.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod config_reference;
pub mod console;
pub mod credentials;
pub mod cursor_account;
pub mod debug;
pub mod fake_cursor;
pub mod fake_kiro;
pub mod logging;
pub mod login;
pub mod open_streams;
pub mod ops;
pub mod responses_api;
pub mod routes;
pub mod server;
pub mod store;
pub mod tenancy;
pub mod usage_limits;
