//! One upload going through its tenant's chain: one sandbox inspection per
//! plugin, fed the same bytes side by side, their outcomes turned into a
//! verdict by the policy.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::ingest::{BoxFuture, ObjectDigest, Rejection, Screening, Unavailable, Verdict};
use crate::metrics::{Metrics, PluginCall, PluginVerdict as MetricVerdict};
use crate::policy::{self, Decision, PluginReport, PluginVerdict};
use crate::sandbox::{
    Failure, FailureKind, FeedResult, Inspection, Outcome, PluginResult, Sandbox, Summary,
    TenantStats, UploadMeta,
};
use crate::staging::{FindingRecord, PluginRecord, ScreeningReport};

use super::Loaded;

pub(super) struct ChainScreening {
    loaded: Arc<Loaded>,
    tenant: String,
    slots: Vec<Slot>,
    metrics: Arc<Metrics>,
}

/// One plugin of the chain for this upload.
struct Slot {
    name: String,
    run: Run,
    /// Its answer, once it gave one (early, or from `finish`).
    result: Option<PluginResult>,
}

enum Run {
    Live(Box<Inspection>),
    /// Skipped after repeated failures; its failure rule applies.
    Disabled,
}

impl ChainScreening {
    /// Starts every plugin of the tenant's chain on the upload.
    pub(super) async fn start(
        sandbox: &Sandbox,
        loaded: Arc<Loaded>,
        tenant: &str,
        meta: UploadMeta,
        stats: TenantStats,
        metrics: Arc<Metrics>,
    ) -> Result<ChainScreening, Unavailable> {
        let chain = loaded.policy.chain(tenant);
        let starts = chain.iter().map(|policy| {
            let disabled = loaded.health[&policy.name].is_disabled(policy);
            let plugin = loaded.plugins[&policy.name].clone();
            let (meta, stats) = (meta.clone(), stats.clone());
            let metrics = &metrics;
            async move {
                let run = if disabled {
                    Run::Disabled
                } else {
                    let started = Instant::now();
                    let inspection = sandbox.start(&plugin, meta, stats).await;
                    metrics.plugin_call(&policy.name, PluginCall::Instantiate, started.elapsed());
                    Run::Live(Box::new(inspection))
                };
                Slot {
                    name: policy.name.clone(),
                    run,
                    result: None,
                }
            }
        });
        let slots = join_all(starts).await;
        // At capacity: the appliance is overloaded, not the plugin broken. The
        // client retries; the slots already taken are freed on drop.
        for slot in &slots {
            if let Run::Live(inspection) = &slot.run
                && let Some(failure) = inspection.failure()
                && failure.kind == FailureKind::Busy
            {
                return Err(Unavailable(failure.to_string()));
            }
        }
        Ok(ChainScreening {
            loaded,
            tenant: tenant.to_owned(),
            slots,
            metrics,
        })
    }

    async fn feed_all(&mut self, bytes: Bytes) -> Result<(), Rejection> {
        let feeds = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let inspection = slot.pending_inspection()?;
                let bytes = bytes.clone();
                Some(async move {
                    let started = Instant::now();
                    let fed = inspection.feed(bytes).await;
                    (index, fed, started.elapsed())
                })
            });
        for (index, fed, took) in join_all(feeds).await {
            let slot = &mut self.slots[index];
            self.metrics.plugin_call(&slot.name, PluginCall::Feed, took);
            match fed {
                FeedResult::NeedMore | FeedResult::Enough => {}
                FeedResult::Decided(outcome) => slot.result = Some(Ok(outcome)),
                FeedResult::Failed(failure) => slot.result = Some(Err(failure)),
            }
        }
        match self.early_rejection() {
            Some(rejection) => {
                self.record_health();
                Err(rejection)
            }
            None => Ok(()),
        }
    }

    /// A plugin's answer that already rejects the upload, if any.
    fn early_rejection(&self) -> Option<Rejection> {
        let plugins = &self.loaded.policy.plugins;
        let decision = self
            .slots
            .iter()
            .filter(|slot| slot.result.is_some())
            .find_map(|slot| policy::rejects(plugins, &slot.report()))?;
        match self.verdict(decision) {
            Verdict::Reject(rejection) => Some(rejection),
            Verdict::Release(_) | Verdict::Quarantine(_) => None,
        }
    }

    async fn finish_all(&mut self, digest: ObjectDigest) -> Verdict {
        let summary = Summary {
            total_bytes: digest.total_bytes,
            sha256: digest.sha256,
        };
        let finishes = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let inspection = slot.pending_inspection()?;
                Some(async move {
                    let started = Instant::now();
                    let finished = inspection.finish(summary).await;
                    (index, finished, started.elapsed())
                })
            });
        for (index, result, took) in join_all(finishes).await {
            let slot = &mut self.slots[index];
            self.metrics
                .plugin_call(&slot.name, PluginCall::Finish, took);
            slot.result = Some(result);
        }
        self.record_health();
        let reports: Vec<PluginReport> = self.slots.iter().map(Slot::report).collect();
        let decision = policy::decide(
            self.loaded.policy.for_tenant(&self.tenant),
            &self.loaded.policy.plugins,
            &reports,
        );
        self.verdict(decision)
    }

    fn verdict(&self, decision: Decision) -> Verdict {
        let plugins = self.slots.iter().map(|slot| self.plugin_record(slot));
        let mut report = ScreeningReport {
            plugins: plugins.collect(),
            ..ScreeningReport::default()
        };
        match decision {
            Decision::Commit => {
                report.decision = "accept".into();
                Verdict::Release(report)
            }
            Decision::Quarantine { reasons } => {
                report.decision = "quarantine".into();
                report.reasons = reasons;
                Verdict::Quarantine(report)
            }
            Decision::Reject {
                plugin,
                code,
                message,
            } => {
                report.decision = "reject".into();
                report.reasons = vec![format!("{plugin}: {message} ({code})")];
                Verdict::Reject(Rejection {
                    plugin,
                    code,
                    message,
                    report,
                })
            }
        }
    }

    fn plugin_record(&self, slot: &Slot) -> PluginRecord {
        let sha256 = self
            .loaded
            .plugins
            .get(&slot.name)
            .map(|plugin| hex::encode(plugin.sha256()))
            .unwrap_or_default();
        let (verdict, reason, findings, labels) = match (&slot.run, &slot.result) {
            (Run::Disabled, _) => (
                "disabled",
                Some("disabled after repeated failures".into()),
                Vec::new(),
                Vec::new(),
            ),
            (_, None) => ("none", None, Vec::new(), Vec::new()),
            (_, Some(Err(failure))) => ("failed", Some(failure_reason(failure)), vec![], vec![]),
            (_, Some(Ok(outcome))) => {
                let (verdict, reason) = match &outcome.verdict {
                    crate::sandbox::Verdict::Accept => ("accept", None),
                    crate::sandbox::Verdict::Reject { code, message } => {
                        ("reject", Some(format!("{message} ({code})")))
                    }
                    crate::sandbox::Verdict::Quarantine(reason) => {
                        ("quarantine", Some(reason.clone()))
                    }
                };
                (verdict, reason, findings(outcome), outcome.labels.clone())
            }
        };
        PluginRecord {
            plugin: slot.name.clone(),
            sha256,
            verdict: verdict.into(),
            reason,
            findings,
            labels,
        }
    }

    /// Counts each plugin's run towards its health (and so towards
    /// `disable_after_failures`) and its metrics, once per upload.
    fn record_health(&self) {
        for slot in &self.slots {
            let (Run::Live(inspection), Some(result)) = (&slot.run, &slot.result) else {
                continue;
            };
            self.count_verdict(&slot.name, result);
            if let Err(failure) = result {
                tracing::warn!(
                    plugin = %slot.name,
                    tenant = %self.tenant,
                    failure = %failure.kind,
                    "plugin failed on an upload"
                );
            }
            if let Some(health) = self.loaded.health.get(&slot.name) {
                health.record(result.is_err(), inspection.stats().busy);
            }
        }
    }
}

impl ChainScreening {
    fn count_verdict(&self, plugin: &str, result: &PluginResult) {
        let (verdict, rule) = match result {
            Err(failure) => {
                self.metrics.trap(plugin, failure_class(&failure.kind));
                (MetricVerdict::Failed, None)
            }
            Ok(outcome) => {
                let first_finding = outcome.findings.first().map(|f| f.rule.as_str());
                match &outcome.verdict {
                    crate::sandbox::Verdict::Accept => (MetricVerdict::Accept, first_finding),
                    // The code a rejection answers with is the rule that matters.
                    crate::sandbox::Verdict::Reject { code, .. } => {
                        (MetricVerdict::Reject, Some(code.as_str()))
                    }
                    crate::sandbox::Verdict::Quarantine(_) => {
                        (MetricVerdict::Quarantine, first_finding)
                    }
                }
            }
        };
        self.metrics.verdict(plugin, verdict, rule);
    }
}

impl Slot {
    /// The inspection, while it still owes an answer.
    fn pending_inspection(&mut self) -> Option<&mut Inspection> {
        match (&mut self.run, &self.result) {
            (Run::Live(inspection), None) => Some(inspection),
            _ => None,
        }
    }

    fn report(&self) -> PluginReport {
        let (verdict, labels) = match (&self.run, &self.result) {
            (Run::Disabled, _) => (PluginVerdict::Disabled, Vec::new()),
            (_, None) => (PluginVerdict::Accept, Vec::new()),
            (_, Some(Err(failure))) => (
                PluginVerdict::Failed {
                    reason: failure_reason(failure),
                },
                Vec::new(),
            ),
            (_, Some(Ok(outcome))) => (plugin_verdict(outcome), outcome.labels.clone()),
        };
        PluginReport {
            plugin: self.name.clone(),
            verdict,
            labels,
        }
    }
}

fn plugin_verdict(outcome: &Outcome) -> PluginVerdict {
    match &outcome.verdict {
        crate::sandbox::Verdict::Accept => PluginVerdict::Accept,
        crate::sandbox::Verdict::Reject { code, message } => PluginVerdict::Reject {
            code: code.clone(),
            message: message.clone(),
        },
        crate::sandbox::Verdict::Quarantine(reason) => PluginVerdict::Quarantine {
            reason: reason.clone(),
        },
    }
}

/// A failure as a stable class and its detail, e.g. `timeout: ran past its deadline`.
fn failure_reason(failure: &Failure) -> String {
    format!("{}: {}", failure_class(&failure.kind), failure.kind)
}

/// A failure's stable class, as in verdict reasons and metrics.
fn failure_class(kind: &FailureKind) -> &'static str {
    match kind {
        FailureKind::Trap(_) => "trap",
        FailureKind::Timeout => "timeout",
        FailureKind::MemoryLimit => "memory_limit",
        FailureKind::FuelExhausted => "fuel_exhausted",
        FailureKind::Panic(_) => "panic",
        FailureKind::Instantiation(_) => "instantiation",
        FailureKind::Busy => "busy",
        FailureKind::Lost(_) => "lost",
    }
}

fn findings(outcome: &Outcome) -> Vec<FindingRecord> {
    outcome
        .findings
        .iter()
        .map(|finding| FindingRecord {
            rule: finding.rule.clone(),
            severity: format!("{:?}", finding.severity).to_lowercase(),
            offset: finding.offset,
            detail: finding.detail.clone(),
        })
        .collect()
}

impl Screening for ChainScreening {
    fn feed(&mut self, bytes: Bytes) -> BoxFuture<'_, Result<(), Rejection>> {
        Box::pin(self.feed_all(bytes))
    }

    fn finish(&mut self, digest: ObjectDigest) -> BoxFuture<'_, Verdict> {
        Box::pin(self.finish_all(digest))
    }
}
