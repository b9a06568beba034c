//! The route table as `src/startup.rs` writes it, read from its source, so tests that must
//! cover every route (another user's ids, the OpenAPI document) fail when one is added.

/// Every `(METHOD, path)` of the route tables, with its scope (`/api`, `/v1`) in front; a
/// parameter with a pattern (`{id:.+}`) is written plainly (`{id}`).
pub fn route_table() -> Vec<(String, String)> {
    let source = include_str!("../../../src/startup.rs");
    // Each table's scope: the `fn …_routes` a route follows.
    let tables = [
        (source.find("fn api_routes").unwrap(), "/api"),
        (source.find("fn openai_routes").unwrap(), "/v1"),
        (source.find("fn page_routes").unwrap(), ""),
    ];
    let mut routes = Vec::new();
    for (offset, _) in source.match_indices(".route(") {
        let prefix = tables
            .iter()
            .filter(|(start, _)| *start < offset)
            .max_by_key(|(start, _)| *start)
            .map_or("", |(_, prefix)| *prefix);
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
        let path = match path.find(':') {
            Some(colon) => {
                let close = colon + path[colon..].find('}').unwrap();
                format!("{}{}", &path[..colon], &path[close..])
            }
            None => path.to_string(),
        };
        routes.push((method.to_uppercase(), format!("{prefix}{path}")));
    }
    routes
}
