//! The OpenAPI document covers the whole route table, and the docs page shows it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::app::TestApp;
use crate::support::routes::route_table;

#[tokio::test]
async fn every_api_route_is_in_the_openapi_document_and_nothing_else() {
    let app = TestApp::spawn().await;
    let response = app
        .api
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");

    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| ["get", "post", "put", "patch", "delete"].contains(&key.as_str()))
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = route_table()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/api/") || path.starts_with("/v1/"))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes missing from the document: {missing:?}\ndocumented but not routed: {extra:?}"
    );

    // Every operation says who may call it and what its errors look like.
    for (method, path) in &routed {
        let operation = &document["paths"][path][method.to_lowercase()];
        let public = operation["security"].as_array().is_some_and(|s| {
            s.iter()
                .all(|r| r.as_object().is_some_and(serde_json::Map::is_empty))
        });
        if !public && path.starts_with("/api/") {
            assert_eq!(
                operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{method} {path}"
            );
        }
        if path.contains("{id}") && path.starts_with("/api/") {
            let id = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "id")
                .unwrap_or_else(|| panic!("{method} {path} has no id parameter"));
            assert_eq!(id["in"], "path");
        }
    }
    // Operation ids are unique (a viewer links and opens operations by them).
    let mut ids = BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(id) = operation["operationId"].as_str() {
                assert!(ids.insert(id.to_string()), "operationId {id} twice");
            }
        }
    }
    // The error envelope and the stream's events are described.
    let schemas = &document["components"]["schemas"];
    for name in [
        "Error",
        "ErrorBody",
        "TextEvent",
        "DoneEvent",
        "Project",
        "Agent",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_docs_page_loads_its_viewer_under_its_own_policy() {
    let app = TestApp::spawn().await;
    let response = app.api.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let page = response.text().await.unwrap();
    // "Try it out" with the browser's own session sends the page's CSRF token.
    let marker = "data-csrf=\"";
    let start = page.find(marker).expect("the page carries its CSRF token") + marker.len();
    assert_eq!(page[start..].find('"'), Some(64), "{page}");
    let assets: Vec<&str> = page
        .split(['"'])
        .filter(|part| part.starts_with("/static/"))
        .collect();
    assert_eq!(assets.len(), 4, "{page}");
    for asset in assets {
        let response = app.api.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    // The rest of the site keeps its strict policy.
    let login = app.api.get(app.url("/login")).send().await.unwrap();
    let strict = login.headers()["content-security-policy"].to_str().unwrap();
    assert!(!strict.contains("unsafe-inline"), "{strict}");
}
