//! Stored responses (`store: true`): the seam the host fills with a database, and the request
//! preparation that puts a `previous_response_id`'s conversation in front of the input.
//!
//! A response belongs to the user whose key created it ([`owner_of`]); every lookup is by owner
//! and id together, so another user's id reads as unknown (404), never as forbidden: that would
//! confirm the id exists.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::Extensions;
use serde_json::Value;

use super::{parse_body, parse_request, FinishedResponse, OnFinished, ResponseContext};
use crate::chat::ChatRequest;
use crate::error::GatewayError;
use crate::traits::Principal;

/// A stored response: the object `GET /v1/responses/{id}` returns, and the conversation a
/// `previous_response_id` continues.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The response object.
    pub response: Value,
    /// Every item of the conversation up to and including this response's output.
    pub items: Vec<Value>,
}

/// Where stored responses live. Implementations keep each response for their retention time
/// and must scope every call to `owner`.
pub trait ResponseStore: Send + Sync + 'static {
    /// Keeps `response` for `owner`.
    fn save(
        &self,
        owner: &str,
        response: FinishedResponse,
    ) -> BoxFuture<'_, Result<(), GatewayError>>;
    /// `owner`'s response `id`, if it exists and has not expired.
    fn load<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, GatewayError>>;
    /// Deletes `owner`'s response `id`; false when there was none.
    fn delete<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, GatewayError>>;
}

/// Request extension carrying the store, added by the host on the Responses routes when it has
/// a database. Without it, `store` keeps nothing and `previous_response_id` is a 400.
#[derive(Clone)]
pub struct ResponseStoreHandle(pub Arc<dyn ResponseStore>);

/// Whose responses a caller sees: its user, or (keys without users, e.g. the single proxy key)
/// its key.
pub fn owner_of(principal: &Principal) -> String {
    match &principal.user_id {
        Some(user) => format!("user:{user}"),
        None => format!("key:{}", principal.key_id),
    }
}

/// The 404 for an id the caller cannot see.
pub fn response_not_found(id: &str) -> GatewayError {
    let shown: String = id.chars().take(80).collect();
    GatewayError::not_found(format!("Response with id '{shown}' not found."))
}

/// Parses a `POST /v1/responses` body, loading the `previous_response_id` conversation first,
/// and says where the finished response goes (`store: true` with a store).
pub async fn prepare_request(
    body: &[u8],
    extensions: &Extensions,
) -> Result<(ChatRequest, ResponseContext, Option<OnFinished>), GatewayError> {
    let body = parse_body(body)?;
    let store = extensions.get::<ResponseStoreHandle>().cloned();
    let owner = extensions.get::<Principal>().map(owner_of);
    let prior = match body.previous_response_id() {
        None => Vec::new(),
        Some(id) => {
            let (Some(store), Some(owner)) = (&store, &owner) else {
                return Err(GatewayError::invalid_request(
                    "`previous_response_id` needs stored responses, and this gateway runs without a database; send the whole conversation in `input` instead.",
                )
                .with_param("previous_response_id"));
            };
            match store.0.load(owner, id).await? {
                Some(stored) => stored.items,
                None => {
                    return Err(response_not_found(id).with_param("previous_response_id"));
                }
            }
        }
    };
    let keep = body.store();
    let (chat, context) = parse_request(body, prior)?;
    let on_finished: Option<OnFinished> = match (keep, store, owner) {
        (true, Some(store), Some(owner)) => Some(Box::new(move |finished: FinishedResponse| {
            let id = finished.id.clone();
            tokio::spawn(async move {
                if let Err(error) = store.0.save(&owner, finished).await {
                    tracing::warn!(%error, response_id = %id, "could not store a response");
                }
            });
        })),
        _ => None,
    };
    Ok((chat, context, on_finished))
}
