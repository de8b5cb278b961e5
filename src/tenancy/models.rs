//! `TenantCatalog`: the gateway's model catalog plus the admin's aliases and combo models from
//! the store. A combo resolves to its first member the inner catalog knows; the members after
//! it are the fallbacks (see [`TenantCatalog::members`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kiro_layers::traits::{ModelCatalog, ModelInfo, ResolvedModel};

/// See the module docs.
#[derive(Clone)]
pub struct TenantCatalog {
    inner: Arc<dyn ModelCatalog>,
    aliases: Arc<RwLock<HashMap<String, String>>>,
    combos: Arc<RwLock<HashMap<String, Vec<String>>>>,
}

impl TenantCatalog {
    /// Wraps `inner` with the live alias and combo maps of the tenancy state.
    pub fn new(
        inner: Arc<dyn ModelCatalog>,
        aliases: Arc<RwLock<HashMap<String, String>>>,
        combos: Arc<RwLock<HashMap<String, Vec<String>>>>,
    ) -> Self {
        TenantCatalog {
            inner,
            aliases,
            combos,
        }
    }

    /// The members of combo `name` that resolve, in order (empty when `name` is no combo).
    pub fn members(&self, name: &str) -> Vec<ResolvedModel> {
        let members = self
            .combos
            .read()
            .ok()
            .and_then(|c| c.get(name).cloned())
            .unwrap_or_default();
        members
            .iter()
            .filter_map(|m| self.resolve_plain(m))
            .map(|mut r| {
                r.requested = name.to_owned();
                r
            })
            .collect()
    }

    fn resolve_plain(&self, requested: &str) -> Option<ResolvedModel> {
        let lowered = requested.trim().to_ascii_lowercase();
        let target = self
            .aliases
            .read()
            .ok()
            .and_then(|a| a.get(&lowered).cloned());
        match target {
            Some(target) => self.inner.resolve(&target).map(|mut r| {
                r.requested = requested.to_owned();
                r
            }),
            None => self.inner.resolve(requested),
        }
    }
}

impl ModelCatalog for TenantCatalog {
    fn resolve(&self, requested: &str) -> Option<ResolvedModel> {
        if let Some(first) = self.members(requested).into_iter().next() {
            return Some(first);
        }
        self.resolve_plain(requested)
    }

    fn fallbacks(&self, requested: &str) -> Vec<ResolvedModel> {
        self.members(requested).into_iter().skip(1).collect()
    }

    fn list(&self) -> Vec<ModelInfo> {
        let mut list = self.inner.list();
        let extra: Vec<(String, Option<ResolvedModel>)> = {
            let aliases = self
                .aliases
                .read()
                .map(|a| a.keys().cloned().collect::<Vec<_>>());
            let combos = self
                .combos
                .read()
                .map(|c| c.keys().cloned().collect::<Vec<_>>());
            aliases
                .unwrap_or_default()
                .into_iter()
                .chain(combos.unwrap_or_default())
                .map(|name| {
                    let resolved = self.resolve(&name);
                    (name, resolved)
                })
                .collect()
        };
        for (name, resolved) in extra {
            if let Some(r) = resolved {
                if !list.iter().any(|m| m.id == name) {
                    list.push(ModelInfo {
                        id: name.clone(),
                        display_name: name,
                        context_window: r.context_window,
                        max_output_tokens: r.max_output_tokens,
                        kinds: r.kinds.clone(),
                        upstream_ids: Vec::new(),
                    });
                }
            }
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_layers::models::ModelRegistry;

    #[test]
    fn aliases_and_combos_resolve_through_the_inner_catalog() {
        let aliases = Arc::new(RwLock::new(HashMap::from([(
            "fast".to_owned(),
            "claude-haiku-4.5".to_owned(),
        )])));
        let combos = Arc::new(RwLock::new(HashMap::from([(
            "team".to_owned(),
            vec![
                "no-such-model".to_owned(),
                "claude-sonnet-4.5".to_owned(),
                "fast".to_owned(),
            ],
        )])));
        let catalog = TenantCatalog::new(Arc::new(ModelRegistry::with_defaults()), aliases, combos);
        assert_eq!(catalog.resolve("fast").unwrap().kiro_id, "claude-haiku-4.5");
        let team = catalog.resolve("team").unwrap();
        assert_eq!(team.kiro_id, "claude-sonnet-4.5");
        assert_eq!(team.requested, "team");
        let members: Vec<_> = catalog
            .members("team")
            .into_iter()
            .map(|m| m.kiro_id)
            .collect();
        assert_eq!(members, ["claude-sonnet-4.5", "claude-haiku-4.5"]);
        let fallbacks: Vec<_> = catalog
            .fallbacks("team")
            .into_iter()
            .map(|m| m.kiro_id)
            .collect();
        assert_eq!(fallbacks, ["claude-haiku-4.5"]);
        assert!(catalog.fallbacks("fast").is_empty());
        assert!(catalog.list().iter().any(|m| m.id == "team"));
        assert!(catalog.resolve("claude-sonnet-4.5").is_some());
    }
}
