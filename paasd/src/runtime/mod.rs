//! Running app processes in containers on this host. Owns kernel-side isolation only; it
//! must not know about apps, releases or the store.

pub mod cgroups;
