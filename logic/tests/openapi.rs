//! `GET /api/v1/openapi.json`: the document is OpenAPI 3.1, names every
//! route the router serves with its method, and documents each push fully.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{json, start};
use serde_json::Value;

/// Every route of `logic/src/http/mod.rs`'s router, as (method, path under
/// the root). Keep in step with the router: a route missing here is a route
/// this test does not check.
const API_V1: &[(&str, &str)] = &[
    ("post", "/users"),
    ("post", "/login"),
    ("post", "/logout"),
    ("post", "/connect"),
    ("post", "/password"),
    ("post", "/push/users"),
    ("post", "/push/keys"),
    ("post", "/push/rooms/{room}"),
    ("post", "/push/all"),
    ("post", "/push/batch"),
    ("get", "/online"),
    ("get", "/online/users"),
    ("get", "/online/rooms"),
    ("get", "/online/rooms/{room}"),
    ("get", "/presence"),
    ("get", "/nodes"),
    ("get", "/users/{uid}/messages"),
    ("post", "/users/{uid}/disconnect"),
    ("get", "/rooms/{room}/messages"),
    ("get", "/rooms/{room}"),
    ("put", "/rooms/{room}"),
    ("get", "/rooms/{room}/members"),
    ("post", "/rooms/{room}/members"),
    ("delete", "/rooms/{room}/members/{uid}"),
    ("post", "/admin/comets/{id}/drain"),
    ("get", "/admin/store"),
    ("post", "/admin/store/moves"),
    ("get", "/openapi.json"),
];
const ROOT: &[(&str, &str)] = &[("get", "/healthz"), ("get", "/readyz")];

const PUSH: &[&str] = &[
    "/api/v1/push/users",
    "/api/v1/push/keys",
    "/api/v1/push/rooms/{room}",
    "/api/v1/push/all",
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn routes() -> BTreeSet<(String, String)> {
    API_V1
        .iter()
        .map(|(m, p)| ((*m).to_owned(), format!("/api/v1{p}")))
        .chain(ROOT.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())))
        .collect()
}

async fn document() -> Value {
    let t = start(common::config()).await;
    // No Authorization header: the document is public.
    let r = t.client.get(t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let (status, doc) = json(r).await;
    assert_eq!(status, 200, "{doc}");
    doc
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_every_route() {
    let doc = document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Courier");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["info"]["description"].as_str().is_some());

    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| ((*m).to_owned(), path.clone()))
        })
        .collect();
    // Both ways: no route undocumented, no documented route the router lacks.
    assert_eq!(documented, routes());

    let mut operation_ids = BTreeSet::new();
    for (method, path) in routes() {
        let op = &paths[&path][&method];
        let id = op["operationId"].as_str().unwrap().to_owned();
        assert!(
            operation_ids.insert(id),
            "{method} {path}: duplicate operationId"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        // Every `{param}` of the path is a documented path parameter.
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let declared = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
            });
            assert!(
                declared,
                "{method} {path}: path parameter {name} undocumented"
            );
        }
        // Every error reply of /api/v1 has the one error body.
        if path.starts_with("/api/v1") {
            for (status, response) in responses.iter().filter(|(s, _)| s.starts_with(['4', '5'])) {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ApiError",
                    "{method} {path}: {status}"
                );
            }
        }
    }

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["type"], "http");
    assert_eq!(schemes["api_key"]["scheme"], "bearer");
    assert_eq!(schemes["user_token"]["type"], "http");
    assert_eq!(schemes["user_token"]["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["ApiError"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
}

#[tokio::test]
async fn each_push_documents_its_body_idempotency_key_and_replies() {
    let doc = document().await;
    for path in PUSH {
        let op = &doc["paths"][path]["post"];
        // No 403: a key without the `push` scope is refused with 401 like a
        // missing or unknown one (see `auth.rs` and `tests/http_access.rs`).
        for status in ["202", "400", "401"] {
            assert!(
                op["responses"][status].is_object(),
                "{path}: no {status} response"
            );
        }
        assert_eq!(
            op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Pushed",
            "{path}"
        );
        let body = &op["requestBody"];
        assert_eq!(body["required"], true, "{path}");
        let schema = body["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no requestBody schema"));
        let name = schema.rsplit('/').next().unwrap();
        let schema = &doc["components"]["schemas"][name];
        // `data` is any JSON value: an empty schema, no type.
        assert_eq!(schema["properties"]["data"].get("type"), None, "{path}");
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&"data".into()),
            "{path}"
        );
        let params = op["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
            "{path}: no Idempotency-Key header"
        );
        assert_eq!(op["security"], serde_json::json!([{"api_key": ["push"]}]));
    }
}
