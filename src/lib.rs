//! The kiro-gateway application: configuration, credentials, storage, the HTTP server and the
//! fake Kiro upstream used by tests, benches and the demo mode.

pub mod credentials;
