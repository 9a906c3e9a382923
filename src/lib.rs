//! scopegate: an OAuth 2.0 resource-server sidecar.
#![forbid(unsafe_code)]
pub mod dev;
