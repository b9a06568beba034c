//! The route table as `src/startup.rs` writes it, read from its source, so tests that must
//! cover every route (another user's ids, the OpenAPI document) fail when one is added.

/// Every `(METHOD, path)` of the route tables, with `/api` before the API's.
pub fn route_table() -> Vec<(String, String)> {
    let source = include_str!("../../../src/startup.rs");
    let api_start = source.find("fn api_routes").unwrap();
    let pages_start = source.find("fn page_routes").unwrap();
    let mut routes = Vec::new();
    for (offset, _) in source.match_indices(".route(") {
        let prefix = if offset > api_start && (offset < pages_start || pages_start < api_start) {
            "/api"
        } else {
            ""
        };
        let rest = source[offset + 7..].trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let path = &rest[..rest.find('"').unwrap()];
        let after = rest[path.len() + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        let method = &after[..after.find('(').unwrap()];
        routes.push((method.to_uppercase(), format!("{prefix}{path}")));
    }
    routes
}
