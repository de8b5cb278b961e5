//! The configuration reference (`docs/configuration.md`), generated from the clap definitions so
//! it cannot drift: `kiro-gateway config-reference > docs/configuration.md` writes it, and a test
//! fails when the committed file differs from what the code generates.

use clap::CommandFactory;

use crate::config::Cli;

/// The reference as Markdown.
pub fn markdown() -> String {
    let cli = Cli::command();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the code by `kiro-gateway config-reference`; do not edit by hand (a test \
         compares this file with the generated text). Every option can be given as a flag or as \
         an environment variable, and a `.env` file in the working directory is read first.\n",
    );
    for sub in cli.get_subcommands() {
        let args: Vec<_> = sub
            .get_arguments()
            .filter(|a| a.get_long().is_some() && !a.is_hide_set())
            .collect();
        if args.is_empty() {
            continue;
        }
        out.push_str(&format!("\n## `kiro-gateway {}`\n\n", sub.get_name()));
        if let Some(about) = sub.get_about() {
            out.push_str(&format!("{about}\n\n"));
        }
        out.push_str("| Environment | Flag | Default | Description |\n|---|---|---|---|\n");
        for arg in args {
            let env = arg
                .get_env()
                .map(|e| format!("`{}`", e.to_string_lossy()))
                .unwrap_or_else(|| "-".to_owned());
            let flag = format!("`--{}`", arg.get_long().unwrap_or_default());
            let default = if arg.is_hide_default_value_set() {
                "(set your own)".to_owned()
            } else {
                let values: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                if values.is_empty() {
                    "-".to_owned()
                } else {
                    format!("`{}`", values.join(","))
                }
            };
            let mut help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
                .replace('\n', " ")
                .replace('|', "\\|")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let choices: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            if !help.is_empty() && !help.ends_with('.') {
                help.push('.');
            }
            let boolean = choices == ["`true`", "`false`"];
            if !choices.is_empty() && !boolean {
                help.push_str(&format!(" One of {}.", choices.join(", ")));
            }
            out.push_str(&format!("| {env} | {flag} | {default} | {help} |\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed reference is exactly what the code generates: a new, renamed or re-documented
    /// option fails here until `docs/configuration.md` is regenerated.
    #[test]
    fn committed_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == markdown(),
            "docs/configuration.md is missing or stale: run \
             `cargo run -- config-reference > docs/configuration.md`"
        );
    }

    #[test]
    fn every_environment_variable_is_listed() {
        let committed = markdown();
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let cell = format!("`{}`", env.to_string_lossy());
                    assert!(committed.contains(&cell), "{cell} missing");
                }
            }
        }
        assert!(committed.contains("`DEBUG_MODE`") && committed.contains("`LOG_FORMAT`"));
    }
}
