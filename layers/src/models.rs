//! The model catalog: which Kiro models exist, how big their windows are, and how a client's
//! model name (Claude Code's `claude-opus-4-6[1m]`, Cursor's `claude-4.6-opus`, an alias such as
//! `auto-kiro`) resolves to a Kiro `modelId`. Every endpoint resolves names here, in one place.
//! A Claude name the catalog lacks (`claude-3-5-haiku-20241022`, which Claude Code uses for
//! background work) goes to the newest catalog model of the same family, unless pass-through
//! of unknown names is on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::traits::{ModelCatalog, ModelInfo, ResolvedModel};

/// Window assumed for a model Kiro did not describe.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 200_000;
/// Output limit assumed for a model Kiro did not describe.
pub const DEFAULT_MAX_OUTPUT: u64 = 64_000;

/// The models known without asking Kiro (protocol §4.2, limits from `ListAvailableModels`
/// captures where seen). Used when the upstream does not serve `ListAvailableModels`.
pub fn fallback_models() -> Vec<ModelInfo> {
    const K: u64 = 1_000;
    const M: u64 = 1_000_000;
    let table: [(&str, &str, u64, u64); 14] = [
        ("auto", "Auto (Kiro picks the model)", M, 64 * K),
        ("claude-sonnet-4", "Claude Sonnet 4", 200 * K, 64 * K),
        ("claude-sonnet-4.5", "Claude Sonnet 4.5", 200 * K, 64 * K),
        ("claude-sonnet-4.6", "Claude Sonnet 4.6", M, 64 * K),
        ("claude-haiku-4.5", "Claude Haiku 4.5", 200 * K, 64 * K),
        ("claude-opus-4.5", "Claude Opus 4.5", 200 * K, 64 * K),
        ("claude-opus-4.6", "Claude Opus 4.6", M, 128 * K),
        ("claude-opus-4.7", "Claude Opus 4.7", M, 128 * K),
        ("claude-opus-4.8", "Claude Opus 4.8", M, 128 * K),
        ("deepseek-3.2", "DeepSeek 3.2", 128 * K, 32 * K),
        ("glm-5", "GLM-5", 200 * K, 32 * K),
        ("minimax-m2.1", "MiniMax M2.1", 200 * K, 32 * K),
        ("minimax-m2.5", "MiniMax M2.5", 200 * K, 32 * K),
        ("qwen3-coder-next", "Qwen3 Coder Next", 256 * K, 64 * K),
    ];
    table
        .iter()
        .map(|&(id, name, window, output)| ModelInfo {
            id: id.to_owned(),
            display_name: name.to_owned(),
            context_window: window,
            max_output_tokens: output,
            kinds: vec![crate::traits::AccountKind::KIRO],
            upstream_ids: Vec::new(),
        })
        .collect()
}

/// Normalises a client model name to Kiro's spelling (protocol §4.3), lower-cased:
/// `claude-haiku-4-5-20251001` -> `claude-haiku-4.5`, `claude-sonnet-4-20250514` ->
/// `claude-sonnet-4`, `claude-opus-4.6[1m]` -> `claude-opus-4.6`, `claude-4.6-opus` and
/// `claude-4.5-opus-high` -> `claude-opus-4.6` / `claude-opus-4.5`,
/// `claude-3-7-sonnet-latest` -> `claude-3.7-sonnet`. Names no rule matches come back unchanged
/// (lower-cased, suffix stripped).
pub fn normalize_model_name(name: &str) -> String {
    let mut name = name.trim().to_ascii_lowercase();
    strip_context_suffix(&mut name);
    let parts: Vec<&str> = name.split('-').collect();
    if parts.first() != Some(&"claude") || parts.len() < 3 {
        return name;
    }
    let is_family = |s: &str| matches!(s, "haiku" | "sonnet" | "opus");
    let is_num = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    let is_date_or_tag =
        |s: &str| s == "latest" || (s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()));
    let is_dotted = |s: &str| {
        s.split_once('.')
            .is_some_and(|(a, b)| is_num(a) && is_num(b))
    };

    // claude-{family}-{major}[-{minor}][-{date|latest}]
    if is_family(parts[1]) && is_num(parts[2]) {
        let family = parts[1];
        let major = parts[2];
        return match &parts[3..] {
            [] => format!("claude-{family}-{major}"),
            [minor] if is_num(minor) => format!("claude-{family}-{major}.{minor}"),
            [tag] if is_date_or_tag(tag) => format!("claude-{family}-{major}"),
            [minor, tag] if is_num(minor) && (is_date_or_tag(tag) || is_num(tag)) => {
                format!("claude-{family}-{major}.{minor}")
            }
            _ => name,
        };
    }
    // claude-{family}-{major.minor}-{date}
    if is_family(parts[1]) && is_dotted(parts[2]) {
        return match &parts[3..] {
            [] => name,
            [tag] if is_date_or_tag(tag) => format!("claude-{}-{}", parts[1], parts[2]),
            _ => name,
        };
    }
    // Inverted: claude-{major.minor}-{family}[-anything] (Cursor, Windsurf style)
    if is_dotted(parts[1]) && is_family(parts[2]) {
        return format!("claude-{}-{}", parts[2], parts[1]);
    }
    // Legacy: claude-{major}-{minor}-{family}[-{date|latest}]
    if parts.len() >= 4 && is_num(parts[1]) && is_num(parts[2]) && is_family(parts[3]) {
        return format!("claude-{}.{}-{}", parts[1], parts[2], parts[3]);
    }
    name
}

/// Removes a trailing context-window marker such as `[1m]` or `[200k]` (Claude Code).
fn strip_context_suffix(name: &mut String) {
    if let Some(open) = name.rfind('[') {
        let inner = &name[open + 1..];
        if let Some(body) = inner.strip_suffix(']') {
            let digits = body.trim_end_matches(['m', 'k']);
            if !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.len() < body.len()
            {
                name.truncate(open);
            }
        }
    }
}

/// The Claude family (`haiku`, `sonnet`, `opus`) a normalised `claude-...` name belongs to.
fn claude_family(name: &str) -> Option<&str> {
    let mut parts = name.split('-');
    if parts.next() != Some("claude") {
        return None;
    }
    parts.find(|p| matches!(*p, "haiku" | "sonnet" | "opus"))
}

/// The version numbers of a Kiro id such as `claude-opus-4.7` (`[4, 7]`), for ordering.
fn version_of(id: &str) -> Vec<u32> {
    id.rsplit('-')
        .next()
        .unwrap_or_default()
        .split('.')
        .map_while(|n| n.parse().ok())
        .collect()
}

/// The newest catalog model of the Claude family `requested` names, if it names one.
fn newest_of_family<'a>(models: &'a [ModelInfo], requested: &str) -> Option<&'a ModelInfo> {
    let family = claude_family(requested)?;
    let prefix = format!("claude-{family}-");
    models
        .iter()
        .filter(|m| m.id.starts_with(&prefix))
        .max_by_key(|m| version_of(&m.id))
}

/// Each kind's catalog, in the order first given.
type KindCatalogs = Vec<(crate::traits::AccountKind, Vec<ModelInfo>)>;

#[derive(Debug, Default)]
struct CatalogState {
    models: Vec<ModelInfo>,
    by_id: HashMap<String, usize>,
}

/// The gateway's catalog: a list of models (replaceable at run time, e.g. when
/// `ListAvailableModels` answers), aliases from configuration, and an optional pass-through for
/// names it does not know.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    state: Arc<RwLock<Arc<CatalogState>>>,
    /// Each kind's own catalog, in the order first given (Kiro's list first); the state above is
    /// their union, one entry per name, listing every kind that serves it.
    catalogs: Arc<std::sync::Mutex<KindCatalogs>>,
    aliases: Arc<HashMap<String, String>>,
    hidden: Arc<Vec<String>>,
    pass_through: bool,
}

impl ModelRegistry {
    /// A registry over `models`, with `aliases` (client name -> model id) applied first.
    pub fn new(models: Vec<ModelInfo>, aliases: HashMap<String, String>) -> Self {
        let registry = ModelRegistry {
            state: Arc::default(),
            catalogs: Arc::default(),
            aliases: Arc::new(
                aliases
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
            ),
            hidden: Arc::new(Vec::new()),
            pass_through: false,
        };
        registry.replace_models(models);
        registry
    }

    /// The fallback list with the default alias `auto-kiro` -> `auto` (Cursor has its own `auto`).
    pub fn with_defaults() -> Self {
        let aliases = HashMap::from([("auto-kiro".to_owned(), "auto".to_owned())]);
        Self::new(fallback_models(), aliases)
    }

    /// Unknown names go to Kiro as they are (with default limits) instead of a 404.
    pub fn pass_through_unknown(mut self, yes: bool) -> Self {
        self.pass_through = yes;
        self
    }

    /// Ids left out of the listing (they still resolve).
    pub fn hide_from_list(mut self, ids: Vec<String>) -> Self {
        self.hidden = Arc::new(ids);
        self
    }

    /// Swaps in a new base model list (Kiro's catalog; readers never block on this for long).
    pub fn replace_models(&self, models: Vec<ModelInfo>) {
        self.replace_catalog(crate::traits::AccountKind::KIRO, models);
    }

    /// Swaps in the catalog of one other kind of account (e.g. Cursor's `AvailableModels`):
    /// its models are marked as served by `kind`, and a name several kinds list is listed once.
    pub fn replace_models_of(&self, kind: crate::traits::AccountKind, models: Vec<ModelInfo>) {
        let models = models
            .into_iter()
            .map(|m| ModelInfo {
                kinds: vec![kind.clone()],
                ..m
            })
            .collect();
        self.replace_catalog(kind, models);
    }

    fn replace_catalog(&self, kind: crate::traits::AccountKind, models: Vec<ModelInfo>) {
        let merged = {
            let Ok(mut catalogs) = self.catalogs.lock() else {
                return;
            };
            match catalogs.iter_mut().find(|(k, _)| *k == kind) {
                Some(slot) => slot.1 = models,
                None => catalogs.push((kind, models)),
            }
            let mut merged: Vec<ModelInfo> = Vec::new();
            for (_, list) in catalogs.iter() {
                for model in list {
                    match merged
                        .iter_mut()
                        .find(|m| m.id.eq_ignore_ascii_case(&model.id))
                    {
                        Some(known) => {
                            for k in &model.kinds {
                                if !known.kinds.contains(k) {
                                    known.kinds.push(k.clone());
                                }
                            }
                            for spelling in &model.upstream_ids {
                                if !known.upstream_ids.contains(spelling) {
                                    known.upstream_ids.push(spelling.clone());
                                }
                            }
                        }
                        None => merged.push(model.clone()),
                    }
                }
            }
            merged
        };
        self.install(merged);
    }

    fn install(&self, models: Vec<ModelInfo>) {
        // An upstream's own spelling resolves too, unless it is some model's public id.
        let mut by_id: HashMap<String, usize> = models
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                m.upstream_ids
                    .iter()
                    .map(move |(_, id)| (id.to_ascii_lowercase(), i))
            })
            .collect();
        by_id.extend(
            models
                .iter()
                .enumerate()
                .map(|(i, m)| (m.id.to_ascii_lowercase(), i)),
        );
        let next = Arc::new(CatalogState { models, by_id });
        if let Ok(mut state) = self.state.write() {
            *state = next;
        }
    }

    fn snapshot(&self) -> Arc<CatalogState> {
        self.state
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_default()
    }
}

impl ModelCatalog for ModelRegistry {
    fn resolve(&self, requested: &str) -> Option<ResolvedModel> {
        let lowered = requested.trim().to_ascii_lowercase();
        let target = match self.aliases.get(&lowered) {
            Some(alias_target) => alias_target.to_ascii_lowercase(),
            None => normalize_model_name(&lowered),
        };
        let state = self.snapshot();
        // The name as sent first (a public id, or an upstream's own spelling such as Cursor's
        // `claude-4.5-sonnet-thinking`, which normalising would shorten), then normalised.
        let found = state
            .by_id
            .get(&lowered)
            .filter(|_| !self.aliases.contains_key(&lowered))
            .or_else(|| state.by_id.get(&target))
            .map(|&i| &state.models[i]);
        // Older Claude names (Claude Code's `claude-3-5-haiku-20241022` for background work)
        // go to the newest model of the same family, unless the operator wants names passed on.
        let found = found.or_else(|| {
            (!self.pass_through)
                .then(|| newest_of_family(&state.models, &target))
                .flatten()
        });
        match found {
            Some(model) => Some(ResolvedModel {
                requested: requested.to_owned(),
                kiro_id: model.id.clone(),
                context_window: model.context_window,
                max_output_tokens: model.max_output_tokens,
                kinds: model.kinds.clone(),
                upstream_ids: model.upstream_ids.clone(),
            }),
            None if self.pass_through && !target.is_empty() => Some(ResolvedModel {
                requested: requested.to_owned(),
                kiro_id: target,
                context_window: DEFAULT_CONTEXT_WINDOW,
                max_output_tokens: DEFAULT_MAX_OUTPUT,
                // A name no catalog lists goes to any kind: the upstream says if it knows it.
                kinds: Vec::new(),
                upstream_ids: Vec::new(),
            }),
            None => None,
        }
    }

    fn list(&self) -> Vec<ModelInfo> {
        let state = self.snapshot();
        let mut out: Vec<ModelInfo> = state
            .models
            .iter()
            .filter(|m| !self.hidden.contains(&m.id))
            .cloned()
            .collect();
        for (alias, target) in self.aliases.iter() {
            if let Some(&i) = state.by_id.get(&target.to_ascii_lowercase()) {
                let model = &state.models[i];
                out.push(ModelInfo {
                    id: alias.clone(),
                    display_name: format!("{} (alias of {})", model.display_name, model.id),
                    ..model.clone()
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_keeps_its_catalog_and_a_shared_name_lists_once_with_both_kinds() {
        use crate::traits::AccountKind;
        let registry = ModelRegistry::with_defaults();
        let cursor = |id: &str| ModelInfo {
            id: id.into(),
            display_name: id.into(),
            context_window: 1000,
            max_output_tokens: 100,
            kinds: Vec::new(),
            upstream_ids: Vec::new(),
        };
        registry.replace_models_of(
            AccountKind::CURSOR,
            vec![cursor("claude-sonnet-4.5"), cursor("gpt-5.4-medium")],
        );
        let shared = registry.resolve("claude-sonnet-4.5").unwrap();
        assert_eq!(shared.kinds, [AccountKind::KIRO, AccountKind::CURSOR]);
        assert_eq!(
            registry.resolve("gpt-5.4-medium").unwrap().kinds,
            [AccountKind::CURSOR]
        );
        assert_eq!(
            registry.resolve("claude-haiku-4.5").unwrap().kinds,
            [AccountKind::KIRO]
        );
        let listed = registry.list();
        assert_eq!(
            listed
                .iter()
                .filter(|m| m.id == "claude-sonnet-4.5")
                .count(),
            1
        );
        // Kiro's catalog refreshing later keeps Cursor's models.
        registry.replace_models(fallback_models());
        assert_eq!(
            registry.resolve("gpt-5.4-medium").unwrap().kinds,
            [AccountKind::CURSOR]
        );
    }

    #[test]
    fn normalises_the_known_spellings() {
        let cases = [
            ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
            ("claude-opus-4-5", "claude-opus-4.5"),
            ("claude-sonnet-4-5-latest", "claude-sonnet-4.5"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-3-7-sonnet-20250219", "claude-3.7-sonnet"),
            ("claude-haiku-4.5-20251001", "claude-haiku-4.5"),
            ("claude-4.5-opus-high", "claude-opus-4.5"),
            ("claude-4.6-opus", "claude-opus-4.6"),
            ("Claude-Opus-4-6[1m]", "claude-opus-4.6"),
            ("claude-opus-4.6[1M]", "claude-opus-4.6"),
            ("claude-sonnet-4.5", "claude-sonnet-4.5"),
            ("auto", "auto"),
            ("gpt-4o", "gpt-4o"),
            ("claude-opus-4-6-thinking", "claude-opus-4-6-thinking"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_model_name(input), want, "{input}");
        }
    }

    #[test]
    fn resolves_aliases_and_windows() {
        let registry = ModelRegistry::with_defaults();
        let auto = registry.resolve("auto-kiro").unwrap();
        assert_eq!(auto.kiro_id, "auto");
        assert_eq!(auto.requested, "auto-kiro");
        let opus = registry.resolve("claude-opus-4-7[1m]").unwrap();
        assert_eq!(opus.kiro_id, "claude-opus-4.7");
        assert_eq!(opus.context_window, 1_000_000);
        assert!(registry.resolve("gpt-4o").is_none());
        assert!(registry.list().iter().any(|m| m.id == "auto-kiro"));
    }

    #[test]
    fn unknown_claude_versions_go_to_the_newest_of_their_family() {
        let registry = ModelRegistry::with_defaults();
        let haiku = registry.resolve("claude-3-5-haiku-20241022").unwrap();
        assert_eq!(haiku.kiro_id, "claude-haiku-4.5");
        assert_eq!(haiku.requested, "claude-3-5-haiku-20241022");
        let opus = registry.resolve("claude-opus-4-1-20250805").unwrap();
        assert_eq!(opus.kiro_id, "claude-opus-4.8");
        let sonnet = registry.resolve("claude-3-7-sonnet-latest").unwrap();
        assert_eq!(sonnet.kiro_id, "claude-sonnet-4.6");
        assert!(registry.resolve("claude-instant-1").is_none());
        let passing = ModelRegistry::with_defaults().pass_through_unknown(true);
        assert_eq!(
            passing
                .resolve("claude-3-5-haiku-20241022")
                .unwrap()
                .kiro_id,
            "claude-3.5-haiku"
        );
    }

    #[test]
    fn pass_through_keeps_unknown_names() {
        let registry = ModelRegistry::with_defaults().pass_through_unknown(true);
        let resolved = registry.resolve("some-new-model").unwrap();
        assert_eq!(resolved.kiro_id, "some-new-model");
        assert_eq!(resolved.context_window, DEFAULT_CONTEXT_WINDOW);
    }

    #[test]
    fn replacing_models_takes_effect() {
        let registry = ModelRegistry::with_defaults();
        registry.replace_models(vec![ModelInfo {
            id: "claude-sonnet-5".into(),
            display_name: "Claude Sonnet 5".into(),
            context_window: 1_000_000,
            max_output_tokens: 64_000,
            kinds: vec![crate::traits::AccountKind::KIRO],
            upstream_ids: Vec::new(),
        }]);
        assert!(registry.resolve("claude-sonnet-5").is_some());
        assert!(registry.resolve("deepseek-3.2").is_none());
        // A Sonnet the new list lacks lands on the newest Sonnet it has.
        assert_eq!(
            registry.resolve("claude-sonnet-4.5").unwrap().kiro_id,
            "claude-sonnet-5"
        );
    }
}
