//! The state machine that turns [`ChatEvent`]s into Responses output items, and (when streaming)
//! into the event sequence of responses-api.md §3.
//!
//! Items are built one at a time, never interleaved: a text delta opens a `message` item, a
//! reasoning delta a `reasoning` item, a tool-call start a call item; whatever opens next closes
//! the one before. Each item goes `output_item.added` -> its deltas -> its `.done` events ->
//! `output_item.done` with the complete item, at `output_index` = its position in `output`.
//! Function-call arguments stream as they come; a freeform (`custom`) or `local_shell` call is
//! sent whole when its arguments are complete, because its client-side payload (a raw string,
//! an argv list) is read out of the arguments JSON Kiro streams.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::Value;

use super::output::{
    CachedTokens, CallInputEvent, ContentPartEvent, CustomToolCallItem, FunctionCallItem,
    IncompleteDetails, ItemEvent, LifecycleEvent, LocalShellCallItem, MessageItem, OutputItem,
    OutputText, ReasoningItem, ReasoningText, ReasoningTextEvent, ReasoningTokens, ResponseError,
    ResponseObject, SummaryPartEvent, SummaryTextEvent, TextEvent, Usage,
};
use super::payload::{
    check_json, complete_arguments, failure_of, freeform_input, shell_action, strip_fence,
};
use super::tools::ToolKind;
use super::{FinishedResponse, ResponseContext};
use crate::chat::{ChatEvent, ResponseMeta, StopReason, UsageTally};
use crate::error::GatewayError;

/// The item being built.
enum Open {
    Message {
        id: String,
        text: String,
    },
    Reasoning {
        id: String,
        text: String,
        signature: Option<String>,
    },
    Call {
        id: String,
        call_id: String,
        upstream_name: String,
        arguments: String,
        kind: ToolKind,
    },
}

/// How the answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Completed,
    Incomplete(&'static str),
}

pub(super) struct ResponseWriter {
    meta: ResponseMeta,
    context: ResponseContext,
    /// Write SSE events into `out` (false when collecting one JSON body).
    emit: bool,
    sequence: u64,
    pub(super) out: BytesMut,
    output: Vec<OutputItem>,
    open: Option<Open>,
    tally: UsageTally,
    stop: Option<StopReason>,
    reasoning_tokens: u64,
    /// Item ids are `<prefix>_<response hex>` for the first item of a kind, then
    /// `<prefix>_<response hex>_<n>`: unique, and reproducible for a given response id (the
    /// byte-exact tests rely on that).
    items_made: Vec<(&'static str, usize)>,
}

impl ResponseWriter {
    pub(super) fn new(meta: ResponseMeta, context: ResponseContext, emit: bool) -> Self {
        ResponseWriter {
            meta,
            context,
            emit,
            sequence: 0,
            out: BytesMut::with_capacity(4096),
            output: Vec::new(),
            open: None,
            tally: UsageTally::default(),
            stop: None,
            reasoning_tokens: 0,
            items_made: Vec::new(),
        }
    }

    fn next_item_id(&mut self, prefix: &'static str) -> String {
        let base = self.meta.id.strip_prefix("resp_").unwrap_or(&self.meta.id);
        let made = match self.items_made.iter_mut().find(|(kind, _)| *kind == prefix) {
            Some((_, made)) => {
                *made += 1;
                *made - 1
            }
            None => {
                self.items_made.push((prefix, 1));
                0
            }
        };
        if made == 0 {
            format!("{prefix}_{base}")
        } else {
            format!("{prefix}_{base}_{made}")
        }
    }

    /// Appends `event: <kind>` + `data: <json>` and advances the sequence number.
    fn send(&mut self, kind: &str, event: &impl Serialize) {
        self.sequence += 1;
        if !self.emit {
            return;
        }
        self.out.put_slice(b"event: ");
        self.out.put_slice(kind.as_bytes());
        self.out.put_slice(b"\ndata: ");
        if let Err(error) = serde_json::to_writer((&mut self.out).writer(), event) {
            tracing::error!(%error, "could not encode a Responses event");
        }
        self.out.put_slice(b"\n\n");
    }

    fn seq(&self) -> u64 {
        self.sequence
    }

    /// `response.created` and `response.in_progress`.
    pub(super) fn start(&mut self) {
        let created = self.object("in_progress", None, None, None);
        let event = LifecycleEvent {
            kind: "response.created",
            sequence_number: self.seq(),
            response: created,
        };
        let bytes = self
            .emit
            .then(|| serde_json::to_vec(&event).unwrap_or_default());
        self.send_raw("response.created", bytes);
        let in_progress = self.object("in_progress", None, None, None);
        let event = LifecycleEvent {
            kind: "response.in_progress",
            sequence_number: self.seq(),
            response: in_progress,
        };
        let bytes = self
            .emit
            .then(|| serde_json::to_vec(&event).unwrap_or_default());
        self.send_raw("response.in_progress", bytes);
    }

    /// A `response.in_progress` event while the upstream is silent (see `stream::KEEPALIVE`).
    pub(super) fn keepalive(&mut self) {
        let event = LifecycleEvent {
            kind: "response.in_progress",
            sequence_number: self.seq(),
            response: self.object("in_progress", None, None, None),
        };
        let bytes = self
            .emit
            .then(|| serde_json::to_vec(&event).unwrap_or_default());
        self.send_raw("response.in_progress", bytes);
    }

    /// Like [`send`](Self::send) for an event already encoded (lifecycle events borrow `self`).
    fn send_raw(&mut self, kind: &str, json: Option<Vec<u8>>) {
        self.sequence += 1;
        if let Some(json) = json {
            self.out.put_slice(b"event: ");
            self.out.put_slice(kind.as_bytes());
            self.out.put_slice(b"\ndata: ");
            self.out.put_slice(&json);
            self.out.put_slice(b"\n\n");
        }
    }

    /// The response object as it stands.
    fn object(
        &self,
        status: &'static str,
        error: Option<ResponseError>,
        incomplete: Option<IncompleteDetails>,
        usage: Option<Usage>,
    ) -> ResponseObject<'_> {
        let echo = &self.context.echo;
        ResponseObject {
            id: &self.meta.id,
            object: "response",
            created_at: self.meta.created,
            status,
            background: false,
            error,
            incomplete_details: incomplete,
            instructions: echo.instructions.as_deref(),
            max_output_tokens: echo.max_output_tokens,
            model: &self.meta.model,
            output: &self.output,
            parallel_tool_calls: echo.parallel_tool_calls,
            previous_response_id: echo.previous_response_id.as_deref(),
            reasoning: &echo.reasoning,
            service_tier: "default",
            store: echo.store,
            temperature: echo.temperature.unwrap_or(1.0),
            text: &echo.text,
            tool_choice: &echo.tool_choice,
            tools: &echo.tools,
            top_p: echo.top_p.unwrap_or(1.0),
            truncation: "disabled",
            usage,
            user: echo.user.as_deref(),
            metadata: &echo.metadata,
        }
    }

    /// Takes one event into account, writing whatever it makes visible.
    pub(super) fn event(&mut self, event: ChatEvent) {
        self.tally.observe(&event);
        match event {
            ChatEvent::TextDelta(text) if !text.is_empty() => {
                if !matches!(self.open, Some(Open::Message { .. })) {
                    self.close("completed");
                    self.open_message();
                }
                self.text_delta(&text);
            }
            ChatEvent::ReasoningDelta(text) if !text.is_empty() => {
                self.reasoning_tokens += crate::tokens::estimate_text_tokens(&text);
                if !matches!(self.open, Some(Open::Reasoning { .. })) {
                    self.close("completed");
                    self.open_reasoning();
                }
                self.reasoning_delta(&text);
            }
            ChatEvent::ReasoningSignature(signature) => {
                if let Some(Open::Reasoning {
                    signature: slot, ..
                }) = &mut self.open
                {
                    *slot = Some(signature.to_string());
                }
            }
            ChatEvent::ToolUseStart { id, name } => {
                let already_open =
                    matches!(&self.open, Some(Open::Call { call_id, .. }) if *call_id == *id);
                let already_done = self
                    .output
                    .iter()
                    .any(|item| call_id_of(item) == Some(&*id));
                if !already_open && !already_done {
                    self.close("completed");
                    self.open_call(id.to_string(), name.to_string());
                }
            }
            ChatEvent::ToolUseInput { id, fragment } if !fragment.is_empty() => {
                let streamed_item = match &mut self.open {
                    Some(Open::Call {
                        id: item_id,
                        call_id,
                        arguments,
                        kind,
                        ..
                    }) if *call_id == *id => {
                        arguments.push_str(&fragment);
                        (*kind == ToolKind::Function).then(|| item_id.clone())
                    }
                    _ => {
                        tracing::warn!("tool-call arguments for a call that is not open; dropped");
                        None
                    }
                };
                if let Some(item_id) = streamed_item {
                    self.arguments_delta(&item_id, &fragment);
                }
            }
            ChatEvent::ToolUseStop { id } => {
                if matches!(&self.open, Some(Open::Call { call_id, .. }) if *call_id == *id) {
                    self.close("completed");
                }
            }
            ChatEvent::Stop(reason) => self.stop = Some(reason),
            _ => {}
        }
    }

    fn open_message(&mut self) {
        let id = self.next_item_id("msg");
        let item = OutputItem::Message(MessageItem {
            id: id.clone(),
            kind: "message",
            status: "in_progress",
            content: Vec::new(),
            role: "assistant",
        });
        self.item_event("response.output_item.added", &item);
        let part = OutputText::new(String::new());
        let event = ContentPartEvent {
            kind: "response.content_part.added",
            sequence_number: self.seq(),
            item_id: &id,
            output_index: self.output.len(),
            content_index: 0,
            part: &part,
        };
        self.send("response.content_part.added", &event);
        self.open = Some(Open::Message {
            id,
            text: String::new(),
        });
    }

    fn text_delta(&mut self, delta: &str) {
        let Some(Open::Message { id, text }) = &mut self.open else {
            return;
        };
        text.push_str(delta);
        let id = id.clone();
        let event = TextEvent {
            kind: "response.output_text.delta",
            sequence_number: self.seq(),
            item_id: &id,
            output_index: self.output.len(),
            content_index: 0,
            delta: Some(delta),
            text: None,
            logprobs: [],
        };
        self.send("response.output_text.delta", &event);
    }

    fn open_reasoning(&mut self) {
        let id = self.next_item_id("rs");
        let item = OutputItem::Reasoning(ReasoningItem {
            id: id.clone(),
            kind: "reasoning",
            summary: Vec::new(),
            content: None,
            encrypted_content: None,
        });
        self.item_event("response.output_item.added", &item);
        if self.context.summary {
            let part = ReasoningText {
                kind: "summary_text",
                text: String::new(),
            };
            let event = SummaryPartEvent {
                kind: "response.reasoning_summary_part.added",
                sequence_number: self.seq(),
                item_id: &id,
                output_index: self.output.len(),
                summary_index: 0,
                part: &part,
            };
            self.send("response.reasoning_summary_part.added", &event);
        }
        self.open = Some(Open::Reasoning {
            id,
            text: String::new(),
            signature: None,
        });
    }

    fn reasoning_delta(&mut self, delta: &str) {
        let Some(Open::Reasoning { id, text, .. }) = &mut self.open else {
            return;
        };
        text.push_str(delta);
        let id = id.clone();
        let output_index = self.output.len();
        if self.context.summary {
            let event = SummaryTextEvent {
                kind: "response.reasoning_summary_text.delta",
                sequence_number: self.seq(),
                item_id: &id,
                output_index,
                summary_index: 0,
                delta: Some(delta),
                text: None,
            };
            self.send("response.reasoning_summary_text.delta", &event);
        } else {
            let event = ReasoningTextEvent {
                kind: "response.reasoning_text.delta",
                sequence_number: self.seq(),
                item_id: &id,
                output_index,
                content_index: 0,
                delta: Some(delta),
                text: None,
            };
            self.send("response.reasoning_text.delta", &event);
        }
    }

    fn open_call(&mut self, call_id: String, upstream_name: String) {
        let kind = self
            .context
            .tools
            .lookup(&upstream_name)
            .map_or(ToolKind::Function, |tool| tool.kind);
        let prefix = match kind {
            ToolKind::Function => "fc",
            ToolKind::Custom => "ctc",
            ToolKind::LocalShell => "lsh",
        };
        let id = self.next_item_id(prefix);
        let open = Open::Call {
            id,
            call_id,
            upstream_name,
            arguments: String::new(),
            kind,
        };
        if kind == ToolKind::Function {
            let item = self.call_item(&open, "in_progress", true);
            self.item_event("response.output_item.added", &item);
        }
        self.open = Some(open);
    }

    fn arguments_delta(&mut self, item_id: &str, delta: &str) {
        let event = CallInputEvent {
            kind: "response.function_call_arguments.delta",
            sequence_number: self.seq(),
            item_id,
            output_index: self.output.len(),
            delta: Some(delta),
            arguments: None,
            input: None,
            name: None,
        };
        self.send("response.function_call_arguments.delta", &event);
    }

    /// The output item for a call. `opening` gives the item as `output_item.added` shows it
    /// (no payload yet).
    fn call_item(&self, open: &Open, status: &'static str, opening: bool) -> OutputItem {
        let Open::Call {
            id,
            call_id,
            upstream_name,
            arguments,
            kind,
        } = open
        else {
            unreachable!("call_item is only called with a call");
        };
        let declared = self.context.tools.lookup(upstream_name);
        let name = declared.map_or(upstream_name.clone(), |tool| tool.name.clone());
        let namespace = declared.and_then(|tool| tool.namespace.clone());
        match kind {
            ToolKind::Function => OutputItem::FunctionCall(FunctionCallItem {
                id: id.clone(),
                kind: "function_call",
                status,
                arguments: if opening {
                    String::new()
                } else {
                    complete_arguments(arguments)
                },
                call_id: call_id.clone(),
                name,
                namespace,
            }),
            ToolKind::Custom => OutputItem::CustomToolCall(CustomToolCallItem {
                id: id.clone(),
                kind: "custom_tool_call",
                status,
                call_id: call_id.clone(),
                name,
                input: if opening {
                    String::new()
                } else {
                    freeform_input(arguments)
                },
                namespace,
            }),
            ToolKind::LocalShell => OutputItem::LocalShellCall(LocalShellCallItem {
                id: id.clone(),
                kind: "local_shell_call",
                status,
                call_id: call_id.clone(),
                action: shell_action(arguments),
            }),
        }
    }

    fn item_event(&mut self, kind: &'static str, item: &OutputItem) {
        let event = ItemEvent {
            kind,
            sequence_number: self.seq(),
            output_index: self.output.len(),
            item,
        };
        self.send(kind, &event);
    }

    /// Finishes the open item with `status`: its `.done` events, then `output_item.done`.
    fn close(&mut self, status: &'static str) {
        let Some(open) = self.open.take() else {
            return;
        };
        let output_index = self.output.len();
        let item = match open {
            Open::Message { id, text } => {
                let event = TextEvent {
                    kind: "response.output_text.done",
                    sequence_number: self.seq(),
                    item_id: &id,
                    output_index,
                    content_index: 0,
                    delta: None,
                    text: Some(&text),
                    logprobs: [],
                };
                self.send("response.output_text.done", &event);
                let part = OutputText::new(text);
                let event = ContentPartEvent {
                    kind: "response.content_part.done",
                    sequence_number: self.seq(),
                    item_id: &id,
                    output_index,
                    content_index: 0,
                    part: &part,
                };
                self.send("response.content_part.done", &event);
                OutputItem::Message(MessageItem {
                    id,
                    kind: "message",
                    status,
                    content: vec![part],
                    role: "assistant",
                })
            }
            Open::Reasoning {
                id,
                text,
                signature,
            } => {
                let part = ReasoningText {
                    kind: if self.context.summary {
                        "summary_text"
                    } else {
                        "reasoning_text"
                    },
                    text,
                };
                if self.context.summary {
                    let event = SummaryTextEvent {
                        kind: "response.reasoning_summary_text.done",
                        sequence_number: self.seq(),
                        item_id: &id,
                        output_index,
                        summary_index: 0,
                        delta: None,
                        text: Some(&part.text),
                    };
                    self.send("response.reasoning_summary_text.done", &event);
                    let event = SummaryPartEvent {
                        kind: "response.reasoning_summary_part.done",
                        sequence_number: self.seq(),
                        item_id: &id,
                        output_index,
                        summary_index: 0,
                        part: &part,
                    };
                    self.send("response.reasoning_summary_part.done", &event);
                } else {
                    let event = ReasoningTextEvent {
                        kind: "response.reasoning_text.done",
                        sequence_number: self.seq(),
                        item_id: &id,
                        output_index,
                        content_index: 0,
                        delta: None,
                        text: Some(&part.text),
                    };
                    self.send("response.reasoning_text.done", &event);
                }
                let encrypted_content = signature.filter(|_| self.context.encrypted_reasoning);
                let (summary, content) = if self.context.summary {
                    (vec![part], None)
                } else {
                    (Vec::new(), Some(vec![part]))
                };
                OutputItem::Reasoning(ReasoningItem {
                    id,
                    kind: "reasoning",
                    summary,
                    content,
                    encrypted_content,
                })
            }
            open @ Open::Call { .. } => self.close_call(&open, status, output_index),
        };
        self.item_event("response.output_item.done", &item);
        self.output.push(item);
    }

    fn close_call(&mut self, open: &Open, status: &'static str, output_index: usize) -> OutputItem {
        let item = self.call_item(open, status, false);
        let Open::Call { id, .. } = open else {
            return item;
        };
        match &item {
            OutputItem::FunctionCall(call) => {
                if call.arguments != complete_arguments_raw(open) {
                    // Nothing (or whitespace) streamed: the `{}` the item carries goes out as the
                    // one delta, so accumulated deltas equal the final arguments.
                    self.arguments_delta(id, &call.arguments);
                }
                let event = CallInputEvent {
                    kind: "response.function_call_arguments.done",
                    sequence_number: self.seq(),
                    item_id: id,
                    output_index,
                    delta: None,
                    arguments: Some(&call.arguments),
                    input: None,
                    name: Some(&call.name),
                };
                self.send("response.function_call_arguments.done", &event);
            }
            OutputItem::CustomToolCall(call) => {
                let opening = self.call_item(open, "in_progress", true);
                self.item_event("response.output_item.added", &opening);
                let event = CallInputEvent {
                    kind: "response.custom_tool_call_input.delta",
                    sequence_number: self.seq(),
                    item_id: id,
                    output_index,
                    delta: Some(&call.input),
                    arguments: None,
                    input: None,
                    name: None,
                };
                self.send("response.custom_tool_call_input.delta", &event);
                let event = CallInputEvent {
                    kind: "response.custom_tool_call_input.done",
                    sequence_number: self.seq(),
                    item_id: id,
                    output_index,
                    delta: None,
                    arguments: None,
                    input: Some(&call.input),
                    name: None,
                };
                self.send("response.custom_tool_call_input.done", &event);
            }
            _ => {
                let opening = self.call_item(open, "in_progress", true);
                self.item_event("response.output_item.added", &opening);
            }
        }
        item
    }

    fn usage(&self) -> Usage {
        let usage = self
            .tally
            .usage(self.meta.input_tokens_estimate, self.meta.context_window);
        let input =
            usage.input_tokens + usage.cache_read_input_tokens + usage.cache_write_input_tokens;
        Usage {
            input_tokens: input,
            input_tokens_details: CachedTokens {
                cached_tokens: usage.cache_read_input_tokens,
            },
            output_tokens: usage.output_tokens,
            output_tokens_details: ReasoningTokens {
                reasoning_tokens: self.reasoning_tokens.min(usage.output_tokens),
            },
            total_tokens: input + usage.output_tokens,
        }
    }

    /// The upstream ended: closes the open item and writes the terminal event. A completed answer
    /// that breaks its `text.format` ends in `response.failed` instead, and the error comes back
    /// (for a collected answer: an HTTP error).
    pub(super) fn finish(&mut self) -> Result<Ending, GatewayError> {
        let ending = match self.stop {
            Some(StopReason::MaxTokens) => Ending::Incomplete("max_output_tokens"),
            Some(StopReason::ContentFiltered) => Ending::Incomplete("content_filter"),
            _ => Ending::Completed,
        };
        let (status, item_status, kind) = match ending {
            Ending::Incomplete(_) => ("incomplete", "incomplete", "response.incomplete"),
            _ => ("completed", "completed", "response.completed"),
        };
        self.close(item_status);
        if ending == Ending::Completed && self.context.text_format.is_json() {
            if let Err(reason) = check_json(&self.answer_text(), &self.context.text_format) {
                let error = GatewayError::upstream_stream(format!(
                    "The model's answer does not match the requested text.format: {reason}."
                ));
                self.fail(&error);
                return Err(error);
            }
        }
        let incomplete = match ending {
            Ending::Incomplete(reason) => Some(IncompleteDetails { reason }),
            _ => None,
        };
        let usage = self.usage();
        let event = LifecycleEvent {
            kind,
            sequence_number: self.seq(),
            response: self.object(status, None, incomplete, Some(usage)),
        };
        let bytes = self
            .emit
            .then(|| serde_json::to_vec(&event).unwrap_or_default());
        self.send_raw(kind, bytes);
        Ok(ending)
    }

    /// The text of every message item.
    fn answer_text(&self) -> String {
        self.output
            .iter()
            .filter_map(|item| match item {
                OutputItem::Message(message) => Some(message.content.iter()),
                _ => None,
            })
            .flatten()
            .map(|part| part.text.as_str())
            .collect()
    }

    /// The upstream failed after the stream began: closes the open item as incomplete and writes
    /// `response.failed` with the error in `response.error` (where Codex reads it).
    pub(super) fn fail(&mut self, error: &GatewayError) {
        self.close("incomplete");
        let failure = failure_of(error);
        let event = LifecycleEvent {
            kind: "response.failed",
            sequence_number: self.seq(),
            response: self.object("failed", Some(failure), None, Some(self.usage())),
        };
        let bytes = self
            .emit
            .then(|| serde_json::to_vec(&event).unwrap_or_default());
        self.send_raw("response.failed", bytes);
    }

    /// The finished response as JSON (after [`finish`](Self::finish)), with its status.
    pub(super) fn response_json(&self, ending: Ending) -> Value {
        let (status, incomplete) = match ending {
            Ending::Completed => ("completed", None),
            Ending::Incomplete(reason) => ("incomplete", Some(IncompleteDetails { reason })),
        };
        serde_json::to_value(self.object(status, None, incomplete, Some(self.usage())))
            .unwrap_or(Value::Null)
    }

    /// What to keep when the response is stored.
    pub(super) fn finished(&self, ending: Ending) -> FinishedResponse {
        let mut items = self.context.input_items.clone();
        items.extend(
            self.output
                .iter()
                .filter_map(|item| serde_json::to_value(item).ok()),
        );
        FinishedResponse {
            id: self.meta.id.clone(),
            response: self.response_json(ending),
            items,
        }
    }

    /// True when the answer must be JSON (`text.format`).
    pub(super) fn wants_json(&self) -> bool {
        self.context.text_format.is_json()
    }

    /// Unwraps JSON answers from a Markdown fence (collected answers only: streamed text is
    /// already out).
    pub(super) fn unfence_json(&mut self) {
        for item in &mut self.output {
            if let OutputItem::Message(message) = item {
                for part in &mut message.content {
                    if let Some(inner) = strip_fence(&part.text) {
                        part.text = inner;
                    }
                }
            }
        }
    }
}

fn call_id_of(item: &OutputItem) -> Option<&str> {
    match item {
        OutputItem::FunctionCall(call) => Some(&call.call_id),
        OutputItem::CustomToolCall(call) => Some(&call.call_id),
        OutputItem::LocalShellCall(call) => Some(&call.call_id),
        _ => None,
    }
}

fn complete_arguments_raw(open: &Open) -> String {
    match open {
        Open::Call { arguments, .. } => arguments.clone(),
        _ => String::new(),
    }
}
