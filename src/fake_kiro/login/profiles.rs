//! `ListAvailableProfiles` (AWS JSON 1.0, `POST /` with `x-amz-target`), one profile per page.

use super::*;
pub(super) fn list_profiles(
    state: &State,
    headers: &http::HeaderMap,
    body: &Value,
) -> Response<FakeBody> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    if target != Some("AmazonCodeWhispererService.ListAvailableProfiles") {
        return json_response(
            400,
            json!({ "__type": "UnknownOperationException", "message": "Unknown operation" }),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/x-amz-json-1.0") {
        return json_response(
            400,
            json!({ "__type": "SerializationException", "message": "Unsupported content type" }),
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let profiles = token.and_then(|t| state.login().access_profiles.get(t).copied());
    let Some(profiles) = profiles else {
        return json_response(
            403,
            json!({ "__type": "AccessDeniedException", "message": "The bearer token included in the request is invalid." }),
        );
    };
    // One profile per page, so a client that ignores nextToken misses the second.
    let page: usize = match body["nextToken"].as_str() {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) if n < profiles => n,
            _ => {
                return json_response(
                    400,
                    json!({ "__type": "ValidationException", "message": "Invalid nextToken" }),
                )
            }
        },
    };
    let (arn, name) = FAKE_IDC_PROFILES[page];
    let mut answer = json!({ "profiles": [ { "arn": arn, "profileName": name } ] });
    if page + 1 < profiles {
        answer["nextToken"] = json!(format!("page-{}", page + 1));
    }
    json_response(200, answer)
}
