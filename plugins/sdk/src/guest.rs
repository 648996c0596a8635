//! The Wasm export glue: adapts any [`Plugin`] to the generated `inspect` traits and
//! converts between the generated types and the SDK's. Used only by `export_plugin!`.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::strongroom::plugin::inspect::{Guest, GuestInspection};
use crate::bindings::strongroom::plugin::types as wit;
use crate::driver::Driver;
use crate::{Feed, Finding, Outcome, Plugin, Severity, Summary, UploadMeta, Verdict};

/// The component's export, one per plugin crate.
pub struct Component<P>(PhantomData<P>);

impl<P: Plugin> Guest for Component<P> {
    type Inspection = Inspection<P>;
}

/// The `inspection` resource: one per upload. The bindings hand out `&self`; a
/// resource is used by one call at a time, so a `RefCell` borrow never conflicts.
pub struct Inspection<P>(RefCell<Driver<P>>);

impl<P: Plugin> GuestInspection for Inspection<P> {
    fn new(meta: wit::UploadMetadata) -> Self {
        crate::panic::install_hook();
        let meta = UploadMeta {
            tenant: meta.tenant,
            upload_id: meta.upload_id,
            declared_name: meta.declared_name,
            declared_content_type: meta.declared_content_type,
            declared_length: meta.declared_length,
            attributes: meta.attributes,
        };
        let config = crate::host::config_json();
        Inspection(RefCell::new(Driver::new(&meta, &config)))
    }

    fn feed(&self, chunk: Vec<u8>) -> wit::FeedControl {
        match self.0.borrow_mut().feed(&chunk) {
            Feed::NeedMore => wit::FeedControl::NeedMore,
            Feed::Enough => wit::FeedControl::Enough,
            Feed::Decided(outcome) => wit::FeedControl::Decided(outcome_to_wit(outcome)),
        }
    }

    fn finish(&self, summary: wit::UploadSummary) -> wit::Outcome {
        let summary = Summary {
            total_bytes: summary.total_bytes,
            sha256: summary.sha256,
        };
        outcome_to_wit(self.0.borrow_mut().finish(&summary))
    }
}

fn outcome_to_wit(outcome: Outcome) -> wit::Outcome {
    wit::Outcome {
        verdict: match outcome.verdict {
            Verdict::Accept => wit::Verdict::Accept,
            Verdict::Reject { code, message } => {
                wit::Verdict::Reject(wit::RejectInfo { code, message })
            }
            Verdict::Quarantine(reason) => wit::Verdict::Quarantine(reason),
        },
        findings: outcome.findings.into_iter().map(finding_to_wit).collect(),
        labels: outcome.labels,
    }
}

fn finding_to_wit(f: Finding) -> wit::Finding {
    wit::Finding {
        rule: f.rule,
        severity: match f.severity {
            Severity::Info => wit::Severity::Info,
            Severity::Low => wit::Severity::Low,
            Severity::Medium => wit::Severity::Medium,
            Severity::High => wit::Severity::High,
            Severity::Critical => wit::Severity::Critical,
        },
        offset: f.offset,
        detail: f.detail,
    }
}
