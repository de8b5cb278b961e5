//! Responses tools -> canonical [`Tool`]s, and the record of how each was declared so that a call
//! goes back to the client as the item type its tool was declared with.
//!
//! Kiro knows only JSON-schema tools, so every other kind is translated here rather than refused
//! (peers that refused them broke Codex, responses-api.md §1.3):
//! - `function`: as is (the Responses form is flat: no `function` wrapper);
//! - `custom` (freeform, e.g. Codex's `apply_patch`): a one-field schema `{"input": string}`, whose
//!   string comes back as the `custom_tool_call`'s raw `input`;
//! - `namespace`: its member tools flattened to `namespace__name` (Kiro tool names allow no `.`),
//!   restored to `name` + `namespace` on the way out;
//! - `local_shell`: a function taking the command as an argv array, answered as `local_shell_call`;
//! - `web_search` and hosted tools (`file_search`, `mcp`, ...): nothing behind the gateway can run
//!   them, and offering a tool no one executes would only invite calls that go nowhere, so they
//!   are accepted and left out.

use serde_json::{json, Map, Value};

use crate::chat::Tool;
use crate::dialect::openai::fields::{excerpt, invalid, take_string, wrong_type};
use crate::error::GatewayError;

/// How a tool was declared; decides the output item type of its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// `function`: answered as `function_call` with JSON `arguments`.
    Function,
    /// `custom` (freeform): answered as `custom_tool_call` with a raw string `input`.
    Custom,
    /// `local_shell`: answered as `local_shell_call` with an `exec` action.
    LocalShell,
}

/// One declared tool, as the client named it and as Kiro sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTool {
    /// The name offered to Kiro (`namespace__name` for namespaced tools).
    pub upstream_name: String,
    /// The client's own name for the tool.
    pub name: String,
    /// The `namespace` tool this one came from.
    pub namespace: Option<String>,
    /// How it was declared.
    pub kind: ToolKind,
}

/// The tools of one request, by the name Kiro calls them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolKinds(Vec<DeclaredTool>);

impl ToolKinds {
    /// The declaration behind a name Kiro used; an unknown name is treated as a function (Kiro
    /// only ever calls offered tools, but a function call is the safest guess).
    pub fn lookup(&self, upstream_name: &str) -> Option<&DeclaredTool> {
        self.0
            .iter()
            .find(|tool| tool.upstream_name == upstream_name)
    }

    /// The name Kiro knows for a client-side `(namespace, name)` pair, as history items carry it.
    pub fn upstream_name(namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if !namespace.is_empty() => format!("{namespace}__{name}"),
            _ => name.to_owned(),
        }
    }

    fn push(&mut self, tool: DeclaredTool) {
        // A later declaration of the same name (e.g. in `additional_tools`) wins.
        self.0
            .retain(|known| known.upstream_name != tool.upstream_name);
        self.0.push(tool);
    }
}

/// The schema a freeform tool is offered to Kiro with.
pub fn custom_tool_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"input": {
            "type": "string",
            "description": "The tool's raw input text, exactly as the tool description specifies it (not JSON-encoded)."
        }},
        "required": ["input"],
        "additionalProperties": false
    })
}

fn local_shell_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "command": {"type": "array", "items": {"type": "string"}, "description": "The command and its arguments, e.g. [\"ls\", \"-la\"]."},
            "working_directory": {"type": "string", "description": "Directory to run in."},
            "timeout_ms": {"type": "integer", "description": "Time limit in milliseconds."}
        },
        "required": ["command"]
    })
}

/// Parses a `tools` list (top level or an `additional_tools` item) into `tools` and `kinds`.
pub fn parse_tools(
    list: Vec<Value>,
    path: &str,
    tools: &mut Vec<Tool>,
    kinds: &mut ToolKinds,
) -> Result<(), GatewayError> {
    for (index, tool) in list.into_iter().enumerate() {
        parse_tool(tool, &format!("{path}[{index}]"), None, tools, kinds)?;
    }
    Ok(())
}

fn parse_tool(
    tool: Value,
    path: &str,
    namespace: Option<&str>,
    tools: &mut Vec<Tool>,
    kinds: &mut ToolKinds,
) -> Result<(), GatewayError> {
    let Value::Object(mut tool) = tool else {
        return Err(wrong_type(path, "an object", &tool));
    };
    let kind = take_string(&mut tool, "type", &format!("{path}.type"))?
        .unwrap_or_else(|| "function".to_owned());
    match kind.as_str() {
        "function" => {
            let (name, description) = name_and_description(&mut tool, path)?;
            let input_schema = match tool.remove("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(Value::Object(schema)) => Value::Object(schema),
                Some(other) => {
                    return Err(wrong_type(
                        &format!("{path}.parameters"),
                        "an object",
                        &other,
                    ))
                }
            };
            add(
                tools,
                kinds,
                namespace,
                name,
                description,
                input_schema,
                ToolKind::Function,
            );
        }
        "custom" => {
            let (name, mut description) = name_and_description(&mut tool, path)?;
            if let Some(format) = freeform_format(tool.remove("format")) {
                description.push_str(&format);
            }
            add(
                tools,
                kinds,
                namespace,
                name,
                description,
                custom_tool_schema(),
                ToolKind::Custom,
            );
        }
        "local_shell" => add(
            tools,
            kinds,
            namespace,
            "local_shell".to_owned(),
            "Runs a shell command on the user's machine and returns its output.".to_owned(),
            local_shell_schema(),
            ToolKind::LocalShell,
        ),
        "namespace" => {
            let name_path = format!("{path}.name");
            let name = match take_string(&mut tool, "name", &name_path)? {
                Some(name) if !name.is_empty() => name,
                _ => return Err(invalid(format!("`{name_path}` is required."), name_path)),
            };
            let members = match tool.remove("tools") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(members)) => members,
                Some(other) => {
                    return Err(wrong_type(&format!("{path}.tools"), "an array", &other))
                }
            };
            for (index, member) in members.into_iter().enumerate() {
                parse_tool(
                    member,
                    &format!("{path}.tools[{index}]"),
                    Some(&name),
                    tools,
                    kinds,
                )?;
            }
        }
        // Hosted tools (web_search, file_search, mcp, code_interpreter, image_generation,
        // computer_use, ...): see the module docs.
        _ => {}
    }
    Ok(())
}

fn name_and_description(
    tool: &mut Map<String, Value>,
    path: &str,
) -> Result<(String, String), GatewayError> {
    let name_path = format!("{path}.name");
    let name = match take_string(tool, "name", &name_path)? {
        Some(name) if !name.is_empty() => name,
        _ => return Err(invalid(format!("`{name_path}` is required."), name_path)),
    };
    let description =
        take_string(tool, "description", &format!("{path}.description"))?.unwrap_or_default();
    Ok((name, description))
}

/// A freeform tool's input grammar, told to the model in the description since Kiro cannot
/// enforce it.
fn freeform_format(format: Option<Value>) -> Option<String> {
    let Value::Object(format) = format? else {
        return None;
    };
    match format.get("type").and_then(Value::as_str) {
        Some("grammar") => {
            let syntax = format
                .get("syntax")
                .and_then(Value::as_str)
                .unwrap_or("lark");
            let definition = format.get("definition").and_then(Value::as_str)?;
            Some(format!(
                "\n\nThe `input` string must follow this {syntax} grammar:\n{definition}"
            ))
        }
        _ => None,
    }
}

fn add(
    tools: &mut Vec<Tool>,
    kinds: &mut ToolKinds,
    namespace: Option<&str>,
    name: String,
    description: String,
    input_schema: Value,
    kind: ToolKind,
) {
    let upstream_name = ToolKinds::upstream_name(namespace, &name);
    tools.retain(|tool| tool.name != upstream_name);
    tools.push(Tool {
        name: upstream_name.clone(),
        description,
        input_schema,
    });
    kinds.push(DeclaredTool {
        upstream_name,
        name,
        namespace: namespace.map(str::to_owned),
        kind,
    });
}

/// What `tool_choice` asks for, as far as Kiro can honour it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// `auto` (or absent).
    Auto,
    /// `none`: the tools are not offered.
    None,
    /// `required`: told to the model, Kiro cannot force it.
    Required,
    /// `{"type":"function","name":...}` (or `custom`): told to the model.
    Named(String),
}

/// Parses `tool_choice`; kinds the gateway cannot express (`allowed_tools`, `mcp`, hosted tools)
/// behave as `auto`.
pub fn parse_tool_choice(choice: Option<&Value>) -> Result<ToolChoice, GatewayError> {
    match choice {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                format!(
                    "`tool_choice` must be auto, none, required or an object; got `{}`.",
                    excerpt(other)
                ),
                "tool_choice",
            )),
        },
        Some(Value::Object(choice)) => {
            let kind = choice
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = choice.get("name").and_then(Value::as_str);
            match (kind, name) {
                ("function" | "custom", Some(name)) => {
                    let namespace = choice.get("namespace").and_then(Value::as_str);
                    Ok(ToolChoice::Named(ToolKinds::upstream_name(namespace, name)))
                }
                _ => Ok(ToolChoice::Auto),
            }
        }
        Some(other) => Err(wrong_type("tool_choice", "a string or an object", other)),
    }
}

/// The system-prompt sentence standing in for a `tool_choice` Kiro cannot enforce.
pub fn tool_choice_instruction(choice: &ToolChoice) -> Option<String> {
    match choice {
        ToolChoice::Required => {
            Some("You must answer by calling at least one of the available tools.".to_owned())
        }
        ToolChoice::Named(name) => Some(format!("You must answer by calling the tool `{name}`.")),
        ToolChoice::Auto | ToolChoice::None => None,
    }
}
