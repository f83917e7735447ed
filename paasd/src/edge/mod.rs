//! The edge: the router in a process of its own (`paasd __edge`), so that client connections
//! live in a process that paasd's restarts, crashes and upgrades do not touch.
//!
//! `process` is the edge itself, `link` is paasd's side of it, `wire` what they say. This
//! module owns that split and the hand-over of the listening sockets between edges; it must
//! not route (that is `paas_router`) or decide what is published (the supervisor and the
//! certificate service do).

mod link;
mod process;
mod wire;

pub use link::{discover, matches, Edge, EdgeError, Found, Listeners, Sink};
pub use process::{main, EDGE_ARG};
pub use wire::{Access, Options};
