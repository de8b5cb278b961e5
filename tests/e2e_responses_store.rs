//! End to end: stored Responses answers on a database (SQLite, and PostgreSQL when
//! TEST_DATABASE_URL is set): `store: true` keeps the response, `GET`/`DELETE
//! /v1/responses/{id}` read and remove it, `previous_response_id` continues the conversation, and
//! every one of them is visible only to the user whose key created it.

mod common;
mod tenancy_support;

use common::Harness;
use serde_json::{json, Value};
use tenancy_support::*;

async fn user_key(h: &Harness, name: &str) -> String {
    let user = ok(
        h,
        "POST",
        "/admin/users",
        ROOT,
        Some(json!({ "name": name })),
    )
    .await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let key = ok(
        h,
        "POST",
        "/admin/keys",
        ROOT,
        Some(json!({ "kind": "inference", "user_id": user_id })),
    )
    .await;
    key["key"].as_str().unwrap().to_owned()
}

async fn create(h: &Harness, key: &str, body: Value) -> Value {
    let (status, body) = call(h, "POST", "/v1/responses", key, Some(body)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The stored copy of `id`, once the write (which trails the answer) has landed.
async fn stored(h: &Harness, key: &str, id: &str) -> Value {
    for _ in 0..200 {
        let (status, body) = call(h, "GET", &format!("/v1/responses/{id}"), key, None).await;
        if status == 200 {
            return body;
        }
        assert_eq!(status, 404, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{id} was never stored");
}

#[tokio::test]
async fn stored_responses_are_kept_continued_and_private_on_every_backend() {
    let dir = temp_dir();
    for (backend, url) in backend_urls(&dir).await {
        let h = start_on(&dir, &url).await;
        let alice = user_key(&h, &format!("alice-{backend}")).await;
        let bob = user_key(&h, &format!("bob-{backend}")).await;

        // store defaults to true: the object comes back from GET exactly as answered.
        let first = create(
            &h,
            &alice,
            json!({"model": "claude-sonnet-4.5", "input": "The secret word is PAPAYA."}),
        )
        .await;
        let id = first["id"].as_str().unwrap().to_owned();
        assert_eq!(first["store"], true);
        let kept = stored(&h, &alice, &id).await;
        assert_eq!(kept, first, "{backend}");

        // Another user's id is a 404, for reading, deleting and continuing alike.
        let (status, body) = call(&h, "GET", &format!("/v1/responses/{id}"), &bob, None).await;
        assert_eq!(status, 404, "{backend}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let (status, _) = call(&h, "DELETE", &format!("/v1/responses/{id}"), &bob, None).await;
        assert_eq!(status, 404, "{backend}");
        let (status, body) = call(
            &h,
            "POST",
            "/v1/responses",
            &bob,
            Some(
                json!({"model": "claude-sonnet-4.5", "input": "go on", "previous_response_id": id}),
            ),
        )
        .await;
        assert_eq!(status, 404, "{backend}: {body}");
        assert_eq!(body["error"]["param"], "previous_response_id");

        // previous_response_id puts the stored conversation in front of the new input.
        let second = create(
            &h,
            &alice,
            json!({"model": "claude-sonnet-4.5", "stream": false,
            "input": "What was the secret word?", "previous_response_id": id}),
        )
        .await;
        assert_eq!(second["previous_response_id"], id.as_str());
        let upstream = h.fake().stats().last_request_body.unwrap().to_string();
        assert!(
            upstream.contains("PAPAYA") && upstream.contains("What was the secret word?"),
            "{backend}: {upstream}"
        );
        // ... and a chain keeps growing: the third turn still sees the first.
        let second_id = second["id"].as_str().unwrap().to_owned();
        stored(&h, &alice, &second_id).await;
        create(&h, &alice, json!({"model": "claude-sonnet-4.5", "input": "And again?", "previous_response_id": second_id})).await;
        let upstream = h.fake().stats().last_request_body.unwrap().to_string();
        assert!(
            upstream.contains("PAPAYA") && upstream.contains("And again?"),
            "{backend}"
        );

        // A streamed answer is kept too.
        let (status, text) = call(&h, "POST", "/v1/responses", &alice,
            Some(json!({"model": "claude-sonnet-4.5", "stream": true, "input": "[fake:text:streamed and kept]"}))).await;
        assert_eq!(status, 200);
        let created = text
            .as_str()
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap();
        let streamed_id = serde_json::from_str::<Value>(created).unwrap()["response"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let kept = stored(&h, &alice, &streamed_id).await;
        assert_eq!(kept["status"], "completed");
        assert_eq!(kept["output"][0]["content"][0]["text"], "streamed and kept");

        // store: false keeps nothing.
        let unkept = create(
            &h,
            &alice,
            json!({"model": "claude-sonnet-4.5", "input": "forget me", "store": false}),
        )
        .await;
        assert_eq!(unkept["store"], false);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (status, _) = call(
            &h,
            "GET",
            &format!("/v1/responses/{}", unkept["id"].as_str().unwrap()),
            &alice,
            None,
        )
        .await;
        assert_eq!(status, 404, "{backend}");

        // DELETE removes it for good.
        let (status, body) = call(&h, "DELETE", &format!("/v1/responses/{id}"), &alice, None).await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert_eq!(
            body,
            json!({"id": id, "object": "response", "deleted": true})
        );
        let (status, _) = call(&h, "GET", &format!("/v1/responses/{id}"), &alice, None).await;
        assert_eq!(status, 404);
        h.shutdown().await;
    }
}
