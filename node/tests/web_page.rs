//! The web page over real HTTP on loopback (issue 12): the embedded files
//! with their headers, and `--lan` device pairing (pair, use, revoke).
//! The browser end-to-end tests are in tests/e2e (run by scripts/test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http::{bearer, send, serve, Api};
use common::{key, Fixture};
use hearth_node::api::{web, Tuning};
use hearth_proto::Level;
use serde_json::json;

async fn start(lan: bool) -> Api {
    let f = Fixture::new();
    serve(
        f.admitted_node(&key(1), Level::Member),
        lan,
        Tuning::default(),
    )
    .await
}

/// `/` is the page as HTML, each file with its own content type, the CSP
/// that forbids inline script, no-cache with an ETag, and 304 for a
/// matching `If-None-Match`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_types_csp_and_etags() {
    let api = start(false).await;
    let addr = api.addr;
    let page = send(addr, "GET", "/", &[], b"").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&page.body).contains("<main"));
    assert_eq!(page.header("content-security-policy"), Some(web::CSP));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let js = send(addr, "GET", "/app.js", &[], b"").await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let css = send(addr, "GET", "/app.css", &[], b"").await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let manifest = send(addr, "GET", "/manifest.webmanifest", &[], b"").await;
    assert_eq!(
        manifest.header("content-type"),
        Some("application/manifest+json")
    );
    assert_eq!(manifest.json()["start_url"], json!("/"));
    let etag = page.header("etag").unwrap().to_owned();
    let again = send(addr, "GET", "/", &[("If-None-Match", &etag)], b"").await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(send(addr, "GET", "/nope.js", &[], b"").await.status, 404);
    // Pairing exists only under --lan.
    let pair = send(addr, "POST", "/api/pair", &[], br#"{"code":"00"}"#).await;
    assert_eq!(pair.status, 404);
    api.stop().await;
}

/// Under `--lan`: the page loads without a token but reads do not; the
/// pairing link's code buys a device token that reads and writes, cannot
/// manage devices, and is refused (401) once the owner revokes it; a wrong
/// code, a bad name and revoking an unknown device are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_pairing_gives_a_device_token_until_revoked() {
    let api = start(true).await;
    let addr = api.addr;
    assert_eq!(send(addr, "GET", "/", &[], b"").await.status, 200);
    assert_eq!(send(addr, "GET", "/health", &[], b"").await.status, 401);
    let url = api
        .server()
        .pairing_url()
        .expect("a pairing link on 127.0.0.1");
    let code = url.split("#pair=").nth(1).unwrap().to_owned();
    assert!(url.starts_with(&format!("http://{addr}/#pair=")), "{url}");

    let wrong = send(addr, "POST", "/api/pair", &[], br#"{"code":"00"}"#).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], json!("unauthorized"));
    let bad_name = json!({"code": code, "name": "a\u{7}b"}).to_string();
    let r = send(addr, "POST", "/api/pair", &[], bad_name.as_bytes()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        send(addr, "POST", "/api/pair", &[], b"not json")
            .await
            .status,
        400
    );

    let body = json!({"code": code, "name": "Kitchen phone"}).to_string();
    let paired = send(addr, "POST", "/api/pair", &[], body.as_bytes()).await;
    assert_eq!(paired.status, 201);
    let device = paired.json()["token"].as_str().unwrap().to_owned();
    let id = paired.json()["device"]["id"].as_str().unwrap().to_owned();
    assert_ne!(device, api.server().token);
    let as_device = bearer(&device);
    let as_owner = bearer(&api.server().token);
    let device_h = [("Authorization", as_device.as_str())];
    let owner_h = [("Authorization", as_owner.as_str())];
    assert_eq!(
        send(addr, "GET", "/health", &device_h, b"").await.status,
        200
    );
    let post = json!({"jsonrpc": "2.0", "id": 1, "method": "market.post",
        "params": {"category": "offer", "title": "From the phone"}})
    .to_string();
    let json_h = ("Content-Type", "application/json");
    let r = send(
        addr,
        "POST",
        "/rpc",
        &[device_h[0], json_h],
        post.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json().get("error").is_none(), "{}", r.json());
    assert_eq!(
        send(addr, "GET", "/api/devices", &device_h, b"")
            .await
            .status,
        401,
        "a device token cannot manage devices"
    );

    let list = send(addr, "GET", "/api/devices", &owner_h, b"").await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["devices"][0]["name"], json!("Kitchen phone"));
    assert!(list["devices"][0].get("hash").is_none(), "{list}");
    assert_eq!(list["pairing"]["url"], json!(url));
    assert!(list["pairing"]["qr"].as_array().unwrap().len() >= 21);

    let path = format!("/api/devices/{id}");
    assert_eq!(
        send(addr, "DELETE", &path, &device_h, b"").await.status,
        401
    );
    assert_eq!(send(addr, "DELETE", &path, &owner_h, b"").await.status, 204);
    assert_eq!(send(addr, "DELETE", &path, &owner_h, b"").await.status, 404);
    assert_eq!(
        send(addr, "GET", "/health", &device_h, b"").await.status,
        401
    );
    let r = send(
        addr,
        "POST",
        "/rpc",
        &[device_h[0], json_h],
        post.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        send(addr, "GET", "/health", &owner_h, b"").await.status,
        200
    );
    api.stop().await;
}
