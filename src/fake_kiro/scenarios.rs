//! Scripted answers: each [`Scenario`] becomes a [`Script`] of real event-stream frames (or an
//! error status), built from what the request asked for.

use std::str::FromStr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kiro_layers::kiro::eventstream::Message;
use serde_json::{json, Value};

use super::tool_args::sample_arguments;

/// One scripted answer of the fake upstream.
///
/// Selected, in order: the FIFO queue of [`super::FakeKiroHandle::push_scenario`]; else a
/// `[fake:NAME]` or `[fake:NAME:ARG]` directive in the current user message; else [`Scenario::Echo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// `echo`: a friendly answer quoting the last user text (or the tool results), several
    /// deltas, with multi-byte characters.
    Echo,
    /// `text:<literal>`: exactly this text, split into a few deltas.
    Text(String),
    /// `multibyte`: CJK and emoji split across frames.
    Multibyte,
    /// `tool_call`: a short text, then a call to the first offered tool with arguments built
    /// from its schema.
    ToolCall,
    /// `two_tools`: two calls one after the other (first two tools, or the first one twice).
    TwoTools,
    /// `shell_and_patch`: a coding agent's edit turn: a short text, a call to the offered shell
    /// tool (`exec_command`, `shell_command`, `shell`, `local_shell`; argument shape from its
    /// schema) running [`SHELL_AND_PATCH_COMMAND`], then a call to the offered `apply_patch`
    /// tool with [`SHELL_AND_PATCH_PATCH`] as its freeform input.
    ShellAndPatch,
    /// `thinking`: text that starts with `<thinking>…</thinking>`, tags split across frames.
    Thinking,
    /// `reasoning_event`: a native `reasoningContentEvent`, then text.
    ReasoningEvent,
    /// `image_count`: says how many images the request carried (all turns).
    ImageCount,
    /// `exception_mid_stream[:Type]`: some text, then an exception frame (default
    /// `ThrottlingException`); the body then ends cleanly.
    ExceptionMidStream(String),
    /// `cut_stream`: some frames, then the connection dies in the middle of a frame.
    CutStream,
    /// `truncated_tool`: tool fragments without a stop frame and without contextUsage or
    /// metering; the body ends cleanly.
    TruncatedTool,
    /// `stall`: some text, then silence until the client goes away.
    Stall,
    /// `status:<code>`: the real error body for that status (Retry-After on 429).
    Status(u16),
    /// `status:<code>:<REASON>`: an error answer with that Kiro `reason` (e.g.
    /// `status:400:CONTENT_LENGTH_EXCEEDS_THRESHOLD`), with the real message where one is known.
    StatusWithReason(u16, String),
    /// `slow_first_byte:<ms>`: the head at once, the first body byte after the delay, then echo.
    SlowFirstByte(Duration),
    /// `long:<n>`: n text deltas.
    Long(usize),
    /// `drip:<n>:<ms>`: n text deltas, one every `ms` milliseconds (a slow, steady stream).
    /// Each delta reads `d<index>@<µs> `, stamped with the wall clock when it is written, so a
    /// client on the same machine can tell the delay the path added from the fake's own pace.
    Drip(usize, Duration),
    /// `capture:<name>`: replays a real captured body byte for byte.
    Capture(String),
    /// `metadata`: text, then a `metadataEvent` with token usage.
    Metadata,
    /// `reset`: the connection is closed before any response head is sent.
    ResetBeforeHeaders,
    /// `garbage`: a 200 whose body is not event-stream framing at all.
    Garbage,
    /// `bad_crc`: some text, then a frame whose message CRC is wrong.
    BadCrc,
    /// `huge_frame`: a frame prelude announcing a 4 GiB frame (with a valid prelude CRC).
    HugeFrame,
}

/// Largest `long:<n>` honoured, so a typo cannot exhaust memory.
const MAX_LONG_DELTAS: usize = 200_000;

impl FromStr for Scenario {
    type Err = String;

    /// Parses `NAME` or `NAME:ARG` (the part inside `[fake:…]`).
    fn from_str(directive: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match directive.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (directive, None),
        };
        let number = |arg: Option<&str>| -> Result<u64, String> {
            arg.and_then(|a| a.trim().parse().ok())
                .ok_or_else(|| format!("fake scenario `{name}` needs a number"))
        };
        Ok(match name {
            "echo" => Scenario::Echo,
            "text" => Scenario::Text(arg.unwrap_or_default().to_owned()),
            "multibyte" => Scenario::Multibyte,
            "tool_call" => Scenario::ToolCall,
            "two_tools" => Scenario::TwoTools,
            "shell_and_patch" => Scenario::ShellAndPatch,
            "thinking" => Scenario::Thinking,
            "reasoning_event" => Scenario::ReasoningEvent,
            "image_count" => Scenario::ImageCount,
            "exception_mid_stream" => Scenario::ExceptionMidStream(
                arg.filter(|a| !a.is_empty())
                    .unwrap_or("ThrottlingException")
                    .to_owned(),
            ),
            "cut_stream" => Scenario::CutStream,
            "truncated_tool" => Scenario::TruncatedTool,
            "stall" => Scenario::Stall,
            "status" => {
                let (code, reason) = match arg.and_then(|a| a.split_once(':')) {
                    Some((code, reason)) => (Some(code), Some(reason)),
                    None => (arg, None),
                };
                let code =
                    u16::try_from(number(code)?).map_err(|_| "status out of range".to_owned())?;
                match reason {
                    Some(reason) if !reason.is_empty() => {
                        Scenario::StatusWithReason(code, reason.to_owned())
                    }
                    _ => Scenario::Status(code),
                }
            }
            "slow_first_byte" => Scenario::SlowFirstByte(Duration::from_millis(number(arg)?)),
            "long" => Scenario::Long((number(arg)? as usize).min(MAX_LONG_DELTAS)),
            "drip" => {
                let (count, every) = arg.and_then(|a| a.split_once(':')).unzip();
                Scenario::Drip(
                    (number(count)? as usize).min(MAX_LONG_DELTAS),
                    Duration::from_millis(number(every)?),
                )
            }
            "capture" => Scenario::Capture(arg.unwrap_or_default().to_owned()),
            "metadata" => Scenario::Metadata,
            "reset" => Scenario::ResetBeforeHeaders,
            "garbage" => Scenario::Garbage,
            "bad_crc" => Scenario::BadCrc,
            "huge_frame" => Scenario::HugeFrame,
            other => return Err(format!("unknown fake scenario `{other}`")),
        })
    }
}

impl Scenario {
    /// The scenario named by the first `[fake:…]` directive in `text`, if any parses.
    pub fn from_directive(text: &str) -> Option<Scenario> {
        let start = text.find("[fake:")? + "[fake:".len();
        let end = text[start..].find(']')? + start;
        text[start..end].parse().ok()
    }
}

/// One piece of a scripted body.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// Encoded bytes: normally one whole frame; may be a fragment (cut) or a replayed body.
    Bytes(Bytes),
    /// Wait before the next part.
    Pause(Duration),
    /// Break the connection (the client sees an incomplete body).
    Cut,
    /// Send nothing more until the client disconnects.
    Stall,
    /// A text delta whose content ends in the time it is written (see [`Scenario::Drip`]).
    StampedDelta { text: String, model_id: String },
}

/// A text delta frame reading `<text>@<µs since the Unix epoch> `, stamped now.
pub(crate) fn stamped_delta(text: &str, model_id: &str) -> Bytes {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let payload = json!({"content": format!("{text}@{micros} "), "modelId": model_id});
    let mut out = BytesMut::new();
    Message::event("assistantResponseEvent", payload.to_string()).encode_into(&mut out);
    out.freeze()
}

/// What the fake answers: a status, extra headers, a content type and the body parts.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub parts: Vec<Part>,
}

pub(crate) const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

impl Script {
    fn stream(parts: Vec<Part>) -> Self {
        Script {
            status: 200,
            content_type: EVENT_STREAM,
            headers: Vec::new(),
            parts,
        }
    }

    /// A JSON error answer like the real service's.
    pub(crate) fn error(status: u16, message: &str, reason: Option<&str>) -> Self {
        let body = json!({"message": message, "reason": reason}).to_string();
        Script {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            parts: vec![Part::Bytes(Bytes::from(body))],
        }
    }
}

/// What the scenarios need to know about the request.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChatContext {
    pub model_id: String,
    pub user_text: String,
    /// `toolSpecification` objects offered on the current message.
    pub tools: Vec<Value>,
    pub image_count: usize,
    pub tool_result_texts: Vec<String>,
    pub context_usage_percentage: f64,
    pub estimated_input_tokens: u64,
}

impl ChatContext {
    /// Reads the parts of a (validated) request body the scenarios use.
    pub(crate) fn from_body(body: &Value, context_window: u64, body_bytes: usize) -> Self {
        let state = &body["conversationState"];
        let current = &state["currentMessage"]["userInputMessage"];
        let context = &current["userInputMessageContext"];
        let history = state["history"].as_array().map_or(&[][..], Vec::as_slice);
        let images_in = |message: &Value| message["images"].as_array().map_or(0, Vec::len);
        let image_count = images_in(current)
            + history
                .iter()
                .map(|entry| images_in(&entry["userInputMessage"]))
                .sum::<usize>();
        let estimated_input_tokens = (body_bytes / 4) as u64;
        ChatContext {
            model_id: current["modelId"].as_str().unwrap_or("auto").to_owned(),
            user_text: current["content"].as_str().unwrap_or_default().to_owned(),
            tools: context["tools"]
                .as_array()
                .map(|tools| {
                    tools
                        .iter()
                        .map(|t| t["toolSpecification"].clone())
                        .collect()
                })
                .unwrap_or_default(),
            image_count,
            tool_result_texts: context["toolResults"]
                .as_array()
                .map(|results| {
                    results
                        .iter()
                        .flat_map(|r| r["content"].as_array().cloned().unwrap_or_default())
                        .filter_map(|block| block["text"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            context_usage_percentage: if context_window == 0 {
                0.0
            } else {
                estimated_input_tokens as f64 * 100.0 / context_window as f64
            },
            estimated_input_tokens,
        }
    }
}

/// Builds the frames of one answer.
struct Frames<'a> {
    ctx: &'a ChatContext,
    parts: Vec<Part>,
    output_chars: usize,
}

impl<'a> Frames<'a> {
    fn new(ctx: &'a ChatContext) -> Self {
        Frames {
            ctx,
            parts: Vec::new(),
            output_chars: 0,
        }
    }

    fn push(&mut self, message: Message) {
        let mut out = BytesMut::new();
        message.encode_into(&mut out);
        self.parts.push(Part::Bytes(out.freeze()));
    }

    fn event(&mut self, event_type: &str, payload: Value) {
        self.push(Message::event(event_type, payload.to_string()));
    }

    fn delta(&mut self, content: &str) {
        self.output_chars += content.chars().count();
        let payload = json!({"content": content, "modelId": self.ctx.model_id});
        self.event("assistantResponseEvent", payload);
    }

    /// `text` as several deltas of varying length, split on character boundaries.
    fn text(&mut self, text: &str) {
        for piece in split_chars(text, &[7, 3, 11, 5, 9, 4]) {
            self.delta(piece);
        }
    }

    fn tool_call(&mut self, spec: &Value, seed: usize) {
        let name = spec["name"].as_str().unwrap_or("tool").to_owned();
        let arguments = sample_arguments(&spec["inputSchema"]["json"]);
        self.tool_call_with(&name, &arguments, seed);
    }

    fn tool_call_with(&mut self, name: &str, arguments: &Value, seed: usize) {
        let id = format!("tooluse_fake{seed}_{}", uuid::Uuid::new_v4().simple());
        let arguments = arguments.to_string();
        self.event("toolUseEvent", json!({"name": name, "toolUseId": id}));
        self.event(
            "toolUseEvent",
            json!({"input": "", "name": name, "toolUseId": id}),
        );
        for fragment in split_chars(&arguments, &[6, 2, 9, 4]) {
            self.event(
                "toolUseEvent",
                json!({"input": fragment, "name": name, "toolUseId": id}),
            );
        }
        self.event(
            "toolUseEvent",
            json!({"name": name, "stop": true, "toolUseId": id}),
        );
    }

    /// contextUsageEvent then meteringEvent: how every complete real stream ends.
    fn finish(mut self) -> Vec<Part> {
        let percentage = self.ctx.context_usage_percentage;
        self.event(
            "contextUsageEvent",
            json!({"contextUsagePercentage": percentage}),
        );
        let usage = 0.01 + self.output_chars as f64 / 20_000.0;
        self.event(
            "meteringEvent",
            json!({"unit": "credit", "unitPlural": "credits", "usage": usage}),
        );
        self.parts
    }
}

/// The answer for `scenario`. `capture` loads a capture body by name.
pub(crate) fn script(
    scenario: &Scenario,
    ctx: &ChatContext,
    capture: impl Fn(&str) -> Option<Bytes>,
) -> Script {
    let mut frames = Frames::new(ctx);
    match scenario {
        Scenario::Echo => {
            frames.text(&echo_text(ctx));
        }
        Scenario::SlowFirstByte(delay) => {
            frames.parts.push(Part::Pause(*delay));
            frames.text(&echo_text(ctx));
        }
        Scenario::Text(text) if text.is_empty() => frames.delta(""),
        Scenario::Text(text) => frames.text(text),
        Scenario::Multibyte => {
            for piece in MULTIBYTE_DELTAS {
                frames.delta(piece);
            }
        }
        Scenario::ToolCall | Scenario::TwoTools => {
            let Some(first) = ctx.tools.first() else {
                frames.text("No tools were offered, so I cannot call one.");
                return Script::stream(frames.finish());
            };
            frames.text("Let me check that for you.");
            frames.tool_call(first, 1);
            if *scenario == Scenario::TwoTools {
                frames.tool_call(ctx.tools.get(1).unwrap_or(first), 2);
            }
        }
        Scenario::ShellAndPatch => {
            let shell = ctx.tools.iter().find(|tool| {
                let name = tool["name"].as_str().unwrap_or_default();
                ["exec_command", "shell_command", "shell", "local_shell"].contains(&name)
            });
            let patch = ctx.tools.iter().find(|tool| tool["name"] == "apply_patch");
            let (Some(shell), Some(patch)) = (shell, patch) else {
                frames.text("shell_and_patch needs a shell tool and an apply_patch tool.");
                return Script::stream(frames.finish());
            };
            frames.text("I will run a command and then edit the file.");
            let shell_name = shell["name"].as_str().unwrap_or_default().to_owned();
            frames.tool_call_with(&shell_name, &shell_arguments(shell), 1);
            let patch_key = if patch["inputSchema"]["json"]["properties"]["patch"].is_object() {
                "patch"
            } else {
                "input"
            };
            frames.tool_call_with(
                "apply_patch",
                &json!({ patch_key: SHELL_AND_PATCH_PATCH }),
                2,
            );
        }
        Scenario::Thinking => {
            for piece in THINKING_DELTAS {
                frames.delta(piece);
            }
        }
        Scenario::ReasoningEvent => {
            frames.event("reasoningContentEvent", json!({"text": REASONING_TEXT}));
            frames.text("The answer is 42.");
        }
        Scenario::ImageCount => {
            let count = ctx.image_count;
            let noun = if count == 1 { "image" } else { "images" };
            frames.text(&format!("I received {count} {noun}."));
        }
        Scenario::ExceptionMidStream(exception_type) => {
            frames.text("Starting to answer, but");
            let message = if exception_type == "ThrottlingException" {
                "Too many requests, please wait before trying again."
            } else {
                "The fake upstream failed in the middle of the stream."
            };
            let payload = json!({"message": message}).to_string();
            frames.push(Message::exception(exception_type, payload));
            return Script::stream(frames.parts);
        }
        Scenario::CutStream => {
            frames.text("This answer will be cut off in the mid");
            let last = Message::event(
                "assistantResponseEvent",
                json!({"content": "dle of a frame", "modelId": ctx.model_id}).to_string(),
            )
            .encode();
            frames.parts.push(Part::Bytes(last.slice(..last.len() / 2)));
            // Let hyper flush the half frame before the connection is torn down.
            frames.parts.push(Part::Pause(Duration::from_millis(30)));
            frames.parts.push(Part::Cut);
            return Script::stream(frames.parts);
        }
        Scenario::TruncatedTool => {
            frames.text("Writing the file now.");
            let name = ctx.tools.first().and_then(|t| t["name"].as_str());
            let name = name.unwrap_or("write_file");
            let id = "tooluse_fake_truncated";
            frames.event("toolUseEvent", json!({"name": name, "toolUseId": id}));
            for fragment in ["", "{\"path\":\"/tmp/a.txt\",", "\"content\":\"partial co"] {
                frames.event(
                    "toolUseEvent",
                    json!({"input": fragment, "name": name, "toolUseId": id}),
                );
            }
            return Script::stream(frames.parts);
        }
        Scenario::Stall => {
            frames.text("I will now go quiet");
            frames.parts.push(Part::Stall);
            return Script::stream(frames.parts);
        }
        Scenario::Status(code) => return status_script(*code),
        Scenario::StatusWithReason(code, reason) => {
            return Script::error(*code, reason_message(reason), Some(reason))
        }
        Scenario::Drip(count, every) => {
            for index in 0..*count {
                if index > 0 {
                    frames.parts.push(Part::Pause(*every));
                }
                let text = format!("d{index}");
                // Counted as the stamped text will be (`@` and 16 digits of µs, a space).
                frames.output_chars += text.chars().count() + 18;
                frames.parts.push(Part::StampedDelta {
                    text,
                    model_id: frames.ctx.model_id.clone(),
                });
            }
        }
        Scenario::Long(count) => {
            for index in 0..*count {
                frames.delta(&format!("w{index} "));
            }
        }
        Scenario::Capture(name) => {
            return match capture(name) {
                Some(body) => Script::stream(split_frames(body)),
                None => Script::error(404, &format!("fake: no capture named `{name}`"), None),
            };
        }
        Scenario::ResetBeforeHeaders => {
            // The server side drops the connection before this script is used.
            return Script::stream(vec![Part::Cut]);
        }
        Scenario::Garbage => {
            let junk = b"<html><body>502 Bad Gateway from some proxy</body></html>\r\n";
            return Script::stream(vec![Part::Bytes(Bytes::from_static(junk))]);
        }
        Scenario::BadCrc => {
            frames.text("The next frame is damaged.");
            let mut damaged = Message::event(
                "assistantResponseEvent",
                json!({"content": "never shown", "modelId": ctx.model_id}).to_string(),
            )
            .encode()
            .to_vec();
            if let Some(last) = damaged.last_mut() {
                *last ^= 0xff;
            }
            frames.parts.push(Part::Bytes(Bytes::from(damaged)));
            return Script::stream(frames.parts);
        }
        Scenario::HugeFrame => {
            let mut prelude = Vec::with_capacity(12);
            prelude.extend_from_slice(&u32::MAX.to_be_bytes());
            prelude.extend_from_slice(&0u32.to_be_bytes());
            let crc = crc32fast::hash(&prelude);
            prelude.extend_from_slice(&crc.to_be_bytes());
            prelude.extend_from_slice(&[0u8; 64]);
            return Script::stream(vec![Part::Bytes(Bytes::from(prelude))]);
        }
        Scenario::Metadata => {
            frames.text("Here are the numbers you asked for.");
            let input = ctx.estimated_input_tokens;
            let output = (frames.output_chars as u64).div_ceil(4);
            frames.event(
                "metadataEvent",
                json!({"tokenUsage": {
                    "uncachedInputTokens": input, "outputTokens": output,
                    "totalTokens": input + output,
                    "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}}),
            );
        }
    }
    Script::stream(frames.finish())
}

/// The real bodies of kiro-protocol.md §7.1 (and the captures README) for each status.
pub(crate) fn status_script(code: u16) -> Script {
    match code {
        400 => Script::error(400, "Improperly formed request.", None),
        402 => Script::error(
            402,
            "You have reached the limit.",
            Some("MONTHLY_REQUEST_COUNT"),
        ),
        403 => Script::error(
            403,
            "The bearer token included in the request is invalid.",
            None,
        ),
        429 => {
            let mut script = Script::error(
                429,
                "Too many requests, please wait before trying again.",
                None,
            );
            script.headers.push(("retry-after", "1".to_owned()));
            script
        }
        500 => Script::error(
            500,
            "Encountered unexpectedly high load when processing the request, please try again.",
            None,
        ),
        503 => Script::error(503, "Service Unavailable", None),
        other => Script::error(other, &format!("Fake status {other}"), None),
    }
}

/// The message the real service sends with a known `reason` (protocol §7.1).
fn reason_message(reason: &str) -> &'static str {
    match reason {
        "CONTENT_LENGTH_EXCEEDS_THRESHOLD" => "Input is too long.",
        "INVALID_MODEL_ID" => "Invalid model. Please select a different model to continue.",
        "MONTHLY_REQUEST_COUNT" => "You have reached the limit.",
        _ => "Improperly formed request.",
    }
}

/// The frames of the precomputed load-test body: `deltas` text deltas, then the end events.
pub(crate) fn precomputed_body(deltas: usize) -> Bytes {
    let ctx = ChatContext {
        model_id: "auto".to_owned(),
        context_usage_percentage: 0.5,
        ..ChatContext::default()
    };
    let mut frames = Frames::new(&ctx);
    for index in 0..deltas {
        frames.delta(&format!("token{index} "));
    }
    let mut body = BytesMut::new();
    for part in frames.finish() {
        if let Part::Bytes(bytes) = part {
            body.extend_from_slice(&bytes);
        }
    }
    body.freeze()
}

const MULTIBYTE_DELTAS: [&str; 9] = [
    "你",
    "好，世界",
    "！",
    "👋",
    "🏽 café ",
    "日本語",
    "テキスト",
    "🎉",
    " ✓",
];
const THINKING_DELTAS: [&str; 7] = [
    "<thin",
    "king>Let me think",
    " about this carefully.",
    "</thi",
    "nking>",
    "\n\nThe answer",
    " is 42.",
];
/// The command of `shell_and_patch`: prints a marker and leaves it in `shell.txt`.
pub const SHELL_AND_PATCH_COMMAND: &str = "echo shell-ran-ok | tee shell.txt";
/// The patch of `shell_and_patch`: changes the line `hello` of `hello.txt`.
pub const SHELL_AND_PATCH_PATCH: &str =
    "*** Begin Patch\n*** Update File: hello.txt\n@@\n-hello\n+hello, patched by apply_patch\n*** End Patch\n";

/// Arguments for a shell tool, shaped by its schema: `cmd` (Codex's `exec_command`), or
/// `command` as a string or an argv array.
fn shell_arguments(tool: &Value) -> Value {
    let properties = &tool["inputSchema"]["json"]["properties"];
    if properties["cmd"].is_object() {
        json!({ "cmd": SHELL_AND_PATCH_COMMAND })
    } else if properties["command"]["type"] == "array" {
        json!({ "command": ["bash", "-lc", SHELL_AND_PATCH_COMMAND] })
    } else {
        json!({ "command": SHELL_AND_PATCH_COMMAND })
    }
}

const REASONING_TEXT: &str = "The user wants a short answer; 42 will do.";

fn echo_text(ctx: &ChatContext) -> String {
    if !ctx.tool_result_texts.is_empty() {
        return format!(
            "Thanks! The tool said: \u{201c}{}\u{201d}. 完成 ✅",
            ctx.tool_result_texts.join(" | ")
        );
    }
    const MAX_QUOTE_CHARS: usize = 500;
    // The user's own words are the last paragraph: the gateway puts the system prompt and the
    // reasoning instructions in front of them, separated by a blank line.
    let text = ctx.user_text.trim();
    let text = text.rsplit("\n\n").next().unwrap_or(text).trim();
    let count = text.chars().count();
    let quoted: String = if count > MAX_QUOTE_CHARS {
        // The user's own words sit at the end (system prompt and thinking prefix go first).
        let tail: String = text.chars().skip(count - MAX_QUOTE_CHARS).collect();
        format!("…{tail}")
    } else {
        text.to_owned()
    };
    format!("Hello! You said: \u{201c}{quoted}\u{201d}. 你好 👋 — a friendly answer from the fake Kiro.")
}

/// Splits `text` into pieces of the cycling character counts in `sizes` (never empty).
fn split_chars<'t>(text: &'t str, sizes: &[usize]) -> Vec<&'t str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut index = 0;
    while !rest.is_empty() {
        let want = sizes[index % sizes.len()].max(1);
        let cut = rest
            .char_indices()
            .nth(want)
            .map_or(rest.len(), |(offset, _)| offset);
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
        index += 1;
    }
    pieces
}

/// Splits a captured body at its frame boundaries (by the prelude length), so chunking
/// applies to a replay exactly as to a generated stream. A malformed tail stays one part.
fn split_frames(body: Bytes) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut offset = 0;
    while offset < body.len() {
        let total = body
            .get(offset..offset + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
            .filter(|&len| len >= 16 && offset + len <= body.len())
            .unwrap_or(body.len() - offset);
        parts.push(Part::Bytes(body.slice(offset..offset + total)));
        offset += total;
    }
    parts
}
