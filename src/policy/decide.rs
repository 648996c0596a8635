//! What the plugins' verdicts add up to, under a tenant's policy. Pure.

use std::collections::BTreeMap;

use super::{OnFailure, PluginPolicy, TenantPolicy};

/// The label a type-detecting plugin sets; allowed types are judged by it.
pub const DETECTED_TYPE: &str = "detected-type";

/// One plugin's verdict on one upload.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginVerdict {
    Accept,
    Reject {
        code: String,
        message: String,
    },
    Quarantine {
        reason: String,
    },
    /// Trap, timeout, memory limit or panic: the policy decides.
    Failed {
        reason: String,
    },
    /// Disabled after repeated failures; its failure rule applies.
    Disabled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginReport {
    pub plugin: String,
    pub verdict: PluginVerdict,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Commit,
    Reject {
        plugin: String,
        code: String,
        message: String,
    },
    Quarantine {
        reasons: Vec<String>,
    },
}

/// Combines the reports (in chain order): a rejection wins, then a type the
/// tenant does not allow, then quarantine; otherwise the upload commits.
pub fn decide(
    tenant: &TenantPolicy,
    plugins: &BTreeMap<String, PluginPolicy>,
    reports: &[PluginReport],
) -> Decision {
    let mut reasons = Vec::new();
    for report in reports {
        match effective(report, plugins) {
            Effect::Reject { code, message } => {
                return Decision::Reject {
                    plugin: report.plugin.clone(),
                    code,
                    message,
                };
            }
            Effect::Quarantine(reason) => reasons.push(format!("{}: {reason}", report.plugin)),
            Effect::Accept => {}
        }
    }
    if let Some(rejection) = disallowed_type(tenant, reports) {
        return rejection;
    }
    if reasons.is_empty() {
        Decision::Commit
    } else {
        Decision::Quarantine { reasons }
    }
}

/// Whether one plugin's report already rejects the upload, whatever the
/// others say (an early verdict or a failure under `on_failure = "reject"`).
/// Type rules wait for the whole chain.
pub fn rejects(
    plugins: &BTreeMap<String, PluginPolicy>,
    report: &PluginReport,
) -> Option<Decision> {
    match effective(report, plugins) {
        Effect::Reject { code, message } => Some(Decision::Reject {
            plugin: report.plugin.clone(),
            code,
            message,
        }),
        Effect::Accept | Effect::Quarantine(_) => None,
    }
}

enum Effect {
    Accept,
    Reject { code: String, message: String },
    Quarantine(String),
}

fn effective(report: &PluginReport, plugins: &BTreeMap<String, PluginPolicy>) -> Effect {
    let failure_rule = plugins
        .get(&report.plugin)
        .map_or(OnFailure::Quarantine, |p| p.on_failure);
    let failure = |reason: String| match failure_rule {
        OnFailure::Accept => Effect::Accept,
        OnFailure::Quarantine => Effect::Quarantine(format!("plugin failed: {reason}")),
        OnFailure::Reject => Effect::Reject {
            code: "plugin-failed".into(),
            message: format!("inspection failed: {reason}"),
        },
    };
    match &report.verdict {
        PluginVerdict::Accept => Effect::Accept,
        PluginVerdict::Reject { code, message } => Effect::Reject {
            code: code.clone(),
            message: message.clone(),
        },
        PluginVerdict::Quarantine { reason } => Effect::Quarantine(reason.clone()),
        PluginVerdict::Failed { reason } => failure(reason.clone()),
        PluginVerdict::Disabled => failure("disabled after repeated failures".into()),
    }
}

fn disallowed_type(tenant: &TenantPolicy, reports: &[PluginReport]) -> Option<Decision> {
    if tenant.allowed_types.is_empty() {
        return None;
    }
    let detected = reports.iter().find_map(|report| {
        report
            .labels
            .iter()
            .find(|(key, _)| key == DETECTED_TYPE)
            .map(|(_, value)| (report.plugin.as_str(), value.as_str()))
    });
    let (plugin, kind) = detected.unwrap_or(("policy", "unknown"));
    if tenant.allowed_types.iter().any(|allowed| allowed == kind) {
        return None;
    }
    Some(Decision::Reject {
        plugin: plugin.to_owned(),
        code: "type-not-allowed".into(),
        message: format!("content of type {kind} is not allowed here"),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn tenant(allowed: &[&str]) -> TenantPolicy {
        TenantPolicy {
            chain: vec!["a".into(), "b".into()],
            allowed_types: allowed.iter().map(|s| s.to_string()).collect(),
            limits: Default::default(),
        }
    }

    fn plugins(on_failure: OnFailure) -> BTreeMap<String, PluginPolicy> {
        ["a", "b"]
            .into_iter()
            .map(|name| {
                let plugin = PluginPolicy {
                    name: name.into(),
                    path: PathBuf::from(format!("{name}.wasm")),
                    sha256: "0".repeat(64),
                    deadline: Duration::from_secs(1),
                    memory_limit: 1 << 20,
                    on_failure,
                    disable_after_failures: 0,
                    config_json: "{}".into(),
                };
                (name.to_owned(), plugin)
            })
            .collect()
    }

    fn report(plugin: &str, verdict: PluginVerdict) -> PluginReport {
        PluginReport {
            plugin: plugin.into(),
            verdict,
            labels: Vec::new(),
        }
    }

    #[test]
    fn all_accepting_commits() {
        let reports = [
            report("a", PluginVerdict::Accept),
            report("b", PluginVerdict::Accept),
        ];
        assert_eq!(
            decide(&tenant(&[]), &plugins(OnFailure::Quarantine), &reports),
            Decision::Commit
        );
    }

    #[test]
    fn a_rejection_wins_over_an_earlier_quarantine() {
        let reports = [
            report(
                "a",
                PluginVerdict::Quarantine {
                    reason: "odd".into(),
                },
            ),
            report(
                "b",
                PluginVerdict::Reject {
                    code: "eicar".into(),
                    message: "test virus".into(),
                },
            ),
        ];
        let decision = decide(&tenant(&[]), &plugins(OnFailure::Quarantine), &reports);
        assert!(
            matches!(decision, Decision::Reject { plugin, code, .. } if plugin == "b" && code == "eicar")
        );
    }

    #[test]
    fn a_failure_follows_the_plugins_failure_rule() {
        let failed = [report(
            "a",
            PluginVerdict::Failed {
                reason: "timeout".into(),
            },
        )];
        assert!(matches!(
            decide(&tenant(&[]), &plugins(OnFailure::Quarantine), &failed),
            Decision::Quarantine { reasons } if reasons[0].contains("timeout")
        ));
        assert!(matches!(
            decide(&tenant(&[]), &plugins(OnFailure::Reject), &failed),
            Decision::Reject { code, .. } if code == "plugin-failed"
        ));
        assert_eq!(
            decide(&tenant(&[]), &plugins(OnFailure::Accept), &failed),
            Decision::Commit
        );
    }

    #[test]
    fn types_are_judged_by_the_detected_label_not_the_declaration() {
        let mut detected = report("a", PluginVerdict::Accept);
        detected.labels.push((DETECTED_TYPE.into(), "elf".into()));
        let decision = decide(
            &tenant(&["pdf"]),
            &plugins(OnFailure::Quarantine),
            &[detected.clone()],
        );
        assert!(matches!(decision, Decision::Reject { code, .. } if code == "type-not-allowed"));
        detected.labels[0].1 = "pdf".into();
        assert_eq!(
            decide(
                &tenant(&["pdf"]),
                &plugins(OnFailure::Quarantine),
                &[detected]
            ),
            Decision::Commit
        );
    }

    #[test]
    fn an_undetected_type_is_unknown_and_only_allowed_when_listed() {
        let reports = [report("a", PluginVerdict::Accept)];
        assert!(matches!(
            decide(&tenant(&["pdf"]), &plugins(OnFailure::Quarantine), &reports),
            Decision::Reject { .. }
        ));
        assert_eq!(
            decide(
                &tenant(&["pdf", "unknown"]),
                &plugins(OnFailure::Quarantine),
                &reports
            ),
            Decision::Commit
        );
    }
}
