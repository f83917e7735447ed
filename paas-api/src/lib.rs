//! `paas-api`: the only crate whose types cross the daemon socket. Wire types in
//! [`types`], the Unix-socket client in [`client`], and [`git_env`], the git policy the CLI's
//! push hook and paasd share. No platform logic lives here.

#![forbid(unsafe_code)]

pub mod client;
pub mod git_env;
pub mod types;

pub use client::{Client, ClientError, DEFAULT_SOCKET};
pub use types::*;

/// Path prefix of every API endpoint.
pub const API_PREFIX: &str = "/api/v1";

pub use hyper::{Method, StatusCode};
