//! The admin API through the router, no sockets: what an operator sends
//! and sees, and what a client key can then do.

use http::StatusCode;
use serde_json::{json, Value};

use crate::http::tests::{send, state, ADMIN_TOKEN, CLIENT_KEY};
use crate::http::AppState;

async fn admin(
    state: &AppState,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    send(state, method, path, ADMIN_TOKEN, body).await
}

async fn chat_status(state: &AppState, key: &str, model: &str) -> (StatusCode, Value) {
    send(
        state,
        "POST",
        "/v1/chat/completions",
        key,
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
}

#[tokio::test]
async fn a_created_key_is_shown_once_and_works_until_revoked() {
    let state = state(Some(ADMIN_TOKEN));
    let (status, created) = admin(
        &state,
        "POST",
        "/admin/keys",
        Some(json!({"name": "ci", "models": ["fast"], "rpm": 10, "budget_daily_usd": 1.5})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        key.starts_with("ck-") && id.starts_with("key_"),
        "{created}"
    );
    assert_eq!(created["rpm"], 10);
    assert_eq!(created["budget_daily_usd"], 1.5);
    assert_eq!(created["revoked"], false);

    let (_, listed) = admin(&state, "GET", "/admin/keys", None).await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    let (_, shown) = admin(&state, "GET", "/admin/keys/ci", None).await;
    assert_eq!(shown["id"], id.as_str(), "found by name too");
    for answer in [&listed, &shown] {
        assert!(
            !answer.to_string().contains(&key),
            "the key is shown only once"
        );
    }

    let (status, models) = send(&state, "GET", "/v1/models", &key, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        models["data"].as_array().unwrap().len(),
        1,
        "only its models: {models}"
    );
    let (status, error) = chat_status(&state, &key, "smart").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(error["error"]["type"], "permission_error");
    assert_eq!(error["error"]["param"], "model");
    assert_eq!(chat_status(&state, &key, "fast").await.0, StatusCode::OK);

    let (status, revoked) = admin(&state, "POST", &format!("/admin/keys/{id}/revoke"), None).await;
    assert_eq!(
        (status, &revoked["revoked"]),
        (StatusCode::OK, &json!(true))
    );
    let (status, error) = chat_status(&state, &key, "fast").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"]["code"], "key_revoked");
    let (status, _) = admin(
        &state,
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"revoked": false})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a revocation sticks");

    let (status, deleted) = admin(&state, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(
        (status, &deleted["deleted"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(
        admin(&state, "GET", &format!("/admin/keys/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, error) = chat_status(&state, &key, "fast").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );
}

#[tokio::test]
async fn a_key_can_only_narrow_its_team() {
    let state = state(Some(ADMIN_TOKEN));
    let (status, team) = admin(
        &state,
        "POST",
        "/admin/teams",
        Some(
            json!({"name": "research", "models": ["fast"], "tpm": 1000, "budget_monthly_usd": 20}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    for (body, param) in [
        (json!({"name": "k", "team": "research", "tpm": 1001}), "tpm"),
        (
            json!({"name": "k", "team": "research", "budget_monthly_usd": 20.01}),
            "budget_monthly_usd",
        ),
        (
            json!({"name": "k", "team": "research", "models": ["smart"]}),
            "models",
        ),
        (json!({"name": "k", "team": "nobody"}), "team"),
    ] {
        let (status, error) = admin(&state, "POST", "/admin/keys", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["error"]["param"], param, "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(param),
            "{error}"
        );
    }
    let (status, key) = admin(
        &state,
        "POST",
        "/admin/keys",
        Some(json!({"name": "k", "team": "research", "tpm": 500})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["team"]["name"], "research");
    let clear = key["key"].as_str().unwrap();
    assert_eq!(
        chat_status(&state, clear, "smart").await.0,
        StatusCode::FORBIDDEN,
        "the team's models"
    );
    let (status, error) = admin(&state, "PATCH", "/admin/keys/k", Some(json!({"tpm": 5000}))).await;
    assert_eq!(
        (status, &error["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("tpm"))
    );

    let (status, error) = admin(&state, "DELETE", "/admin/teams/research", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let (status, shown) = admin(&state, "GET", "/admin/teams/research", None).await;
    assert_eq!((status, &shown["keys"]), (StatusCode::OK, &json!(1)));

    admin(&state, "POST", "/admin/teams/research/revoke", None).await;
    let (_, shown) = admin(&state, "GET", "/admin/keys/k", None).await;
    assert_eq!(
        (&shown["revoked"], &shown["status"]),
        (&json!(false), &json!("team_revoked"))
    );
    let (status, error) = chat_status(&state, clear, "fast").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("team_revoked"))
    );
}

#[tokio::test]
async fn mistakes_get_openai_errors_with_the_right_status() {
    let disabled = state(None);
    let state = state(Some(ADMIN_TOKEN));
    let created = admin(&state, "POST", "/admin/keys", Some(json!({"name": "dup"}))).await;
    assert_eq!(created.0, StatusCode::CREATED);
    let (status, error) = admin(&state, "POST", "/admin/keys", Some(json!({"name": "dup"}))).await;
    assert_eq!(
        (status, &error["error"]["param"]),
        (StatusCode::CONFLICT, &json!("name"))
    );

    let (status, error) = send(&state, "GET", "/admin/keys", CLIENT_KEY, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a client key is not the admin token"
    );
    assert_eq!(error["error"]["code"], "invalid_admin_token");
    let (status, error) = send(&disabled, "GET", "/admin/keys", ADMIN_TOKEN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no admin token configured");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("server.admin_token"));

    let (status, error) = admin(
        &state,
        "POST",
        "/admin/keys",
        Some(json!({"name": "x", "rpm": "ten"})),
    )
    .await;
    assert_eq!(
        (status, &error["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("rpm"))
    );
    assert_eq!(
        admin(&state, "PATCH", "/admin/keys/nobody", Some(json!({})))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin(&state, "POST", "/admin/teams/nobody/revoke", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, error) = admin(&state, "PUT", "/admin/keys", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{error}");

    let expired = admin(
        &state,
        "POST",
        "/admin/keys",
        Some(json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(
        (expired.0, &expired.1["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("expires_at"))
    );
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let state = state(Some(ADMIN_TOKEN));
    // Whole seconds: at least one second ahead, however close the clock
    // is to the next second.
    let soon = chorus_actors::clock::unix_millis() / 1000 + 2;
    let (status, created) = admin(
        &state,
        "POST",
        "/admin/keys",
        Some(json!({"name": "brief", "expires_at": soon})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap();
    let expired_at_ms = soon * 1000 + 100;
    let wait = expired_at_ms.saturating_sub(chorus_actors::clock::unix_millis());
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let (status, error) = chat_status(&state, key, "fast").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key_expired"))
    );
}
