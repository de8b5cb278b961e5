//! [`EventStream`] -> one Responses response object (`"stream": false`).

use bytes::Bytes;
use futures_util::StreamExt;

use super::writer::ResponseWriter;
use super::{OnFinished, ResponseContext};
use crate::chat::{EventStream, ResponseMeta};
use crate::error::GatewayError;

/// Drains `events` into a response object. The first error ends collection and is returned as
/// is, for the caller to turn into an HTTP error in the Responses shape (nothing was sent yet).
/// `on_finished` receives the response to store it.
pub async fn collect_response(
    mut events: EventStream,
    meta: ResponseMeta,
    context: ResponseContext,
    on_finished: Option<OnFinished>,
) -> Result<Bytes, GatewayError> {
    let mut writer = ResponseWriter::new(meta, context, false);
    writer.start();
    while let Some(event) = events.next().await {
        writer.event(event?);
    }
    // Let go of the upstream before the (possibly large) body is rendered.
    drop(events);
    let ending = writer.finish()?;
    if writer.wants_json() {
        writer.unfence_json();
    }
    let finished = writer.finished(ending);
    let body = serde_json::to_vec(&finished.response)
        .map(Bytes::from)
        .map_err(|err| GatewayError::internal(format!("could not encode the response: {err}")))?;
    if let Some(on_finished) = on_finished {
        on_finished(finished);
    }
    Ok(body)
}
