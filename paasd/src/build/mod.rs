//! Builds: turning an uploaded source tarball into a slug and a release (DESIGN section 8).
pub mod extract;
pub mod procfile;
