//! The route table as `src/startup.rs` writes it, read from its source, so tests that must
//! cover every route (another user's ids, the OpenAPI document) fail when one is added.

/// Every `(METHOD, path)` of the route tables, with its scope (`/api`, `/v1`) in front; a
/// parameter with a pattern (`{id:.+}`) is written plainly (`{id}`).
pub fn route_table() -> Vec<(String, String)> {
    let source = include_str!("../../../src/startup.rs");
    // Each table's scope: the `fn …_routes` a resource follows; the tables end where `serve`
    // (whose own resources are not under a table) begins.
    let tables = [
        (source.find("fn api_routes").unwrap(), "/api"),
        (source.find("fn openai_routes").unwrap(), "/v1"),
        (source.find("fn page_routes").unwrap(), ""),
    ];
    let end = source.find("fn serve(").unwrap();
    let mut routes = Vec::new();
    for (offset, _) in source.match_indices("web::resource(\"") {
        let Some(&(_, prefix)) = tables
            .iter()
            .filter(|(start, _)| *start < offset)
            .max_by_key(|(start, _)| *start)
        else {
            continue;
        };
        if offset > end {
            continue;
        }
        let rest = &source[offset + "web::resource(\"".len()..];
        let path = &rest[..rest.find('"').unwrap()];
        // The resource's methods: its chained calls, up to the next resource or the table's end.
        let chain = &rest[path.len()..];
        let chain = &chain[..[".service(", ".default_service("]
            .iter()
            .filter_map(|next| chain.find(next))
            .min()
            .unwrap()];
        let path = match path.find(':') {
            Some(colon) => {
                let close = colon + path[colon..].find('}').unwrap();
                format!("{}{}", &path[..colon], &path[close..])
            }
            None => path.to_string(),
        };
        let before = routes.len();
        for method in ["get", "post", "put", "patch", "delete"] {
            if chain.contains(&format!(".{method}(")) {
                routes.push((method.to_uppercase(), format!("{prefix}{path}")));
            }
        }
        assert!(
            routes.len() > before,
            "no method read for {path}: write each route as `.get(handler)` and the like"
        );
    }
    assert!(
        !source[tables[0].0..end].contains(".route("),
        "a route written as `.route(…)` would be missed: use `web::resource(path).get(…)`"
    );
    routes
}
