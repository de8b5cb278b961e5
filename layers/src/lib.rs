//! `kiro-layers`: tower layers that let OpenAI and Anthropic clients talk to the Kiro API.
//!
//! The crate knows no database and runs no server: the host application provides a
//! [`traits::KeyStore`], a [`traits::TokenSource`], a [`traits::ModelCatalog`] and a
//! [`traits::UsageSink`], and mounts the stack wherever it likes.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod capture;
pub mod chat;
pub mod compress;
pub mod convert;
pub mod cursor;
pub mod dialect;
pub mod error;
pub mod kiro;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod pool;
pub mod quota;
pub mod recover;
pub mod rescue;
pub mod resolve;
pub mod stack;
pub mod store;
pub mod thinking;
pub mod tokens;
pub mod traits;
pub mod upstream;
pub mod usage;

pub use chat::{ChatEvent, ChatRequest, Dialect, EventStream};
pub use error::GatewayError;
