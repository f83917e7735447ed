//! Certificates for the router's HTTPS (issue 15). This module will own them all: issuing
//! through ACME now ([`acme`]), the certificate store and renewal later. It hands the router
//! certificates and challenge answers; it never serves HTTP itself.

pub mod acme;
