//! What RFC 9728 documents say of DPoP (RFC 9449 §5.1), from the routes they cover: known
//! only once routes, resources and `[dpop]` are all compiled.

use std::collections::BTreeMap;

use crate::mcp::config::McpConfig;
use crate::policy::RouteTable;
use crate::resource::ResourceConfig;
use crate::token::config::sender::{DpopConfig, DpopMode};

/// RFC 9728 §2: a metadata document covering a route that takes DPoP lists the proof
/// algorithms, and says DPoP-bound tokens are required when every route it covers requires
/// them. Routes name their document in challenges, so the same lookup decides coverage.
pub(super) fn advertise_dpop(
    routes: &RouteTable,
    dpop: &DpopConfig,
    mcp: &mut McpConfig,
    resources: &mut ResourceConfig,
) {
    let mut modes: BTreeMap<String, Vec<DpopMode>> = BTreeMap::new();
    for route in routes.iter() {
        let url = match mcp.route(&route.name) {
            Some(m) => Some(m.metadata_url.clone()),
            None => resources.for_route(&route.name).map(|d| d.metadata_url.clone()),
        };
        if let Some(url) = url {
            modes.entry(url).or_default().push(route.dpop.unwrap_or(dpop.mode));
        }
    }
    let algorithms = dpop.algorithm_names();
    for document in mcp.documents.iter_mut().chain(resources.documents.iter_mut()) {
        let Some(modes) = modes.get(&document.metadata_url) else {
            continue;
        };
        if modes.iter().any(|m| *m != DpopMode::Off) {
            document.advertise_dpop(&algorithms, modes.iter().all(|m| *m == DpopMode::Required));
        }
    }
}
