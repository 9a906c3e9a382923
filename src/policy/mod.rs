//! The compiled route map, scope and claim rules. No I/O: given a method and a canonical path,
//! [`RouteTable::lookup`] answers which route applies, and a [`ScopeRequirement`] answers
//! whether a set of granted scopes is enough.
//!
//! - [`file`](mod@file) — `[[route]]` as written, and its compile into a [`RouteSpec`].
//! - [`claims`] — typed claim rules (`[[route.claim]]`): exact tests on verified claims,
//!   path parameters included.
//! - [`scopes`] — scope tokens, "any of these sets, each all-of", the implication map.
//! - [`table`] — path patterns, route precedence and lookup.

pub mod claims;
pub mod file;
pub mod scopes;
pub mod table;

pub use claims::{ClaimRule, FileClaimRule};
pub use file::FileRoute;
pub use scopes::{Scope, ScopeImplications, ScopeRequirement};
pub use table::{Access, EnforcementMode, PathPattern, RouteSpec, RouteTable};
