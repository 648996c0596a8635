//! The policy file as written, and its validation into `Policy`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;
use toml::Spanned;

use super::{Error, LimitsOverride, OnFailure, PluginPolicy, Policy, TenantPolicy};

const MAX_DEADLINE: Duration = Duration::from_secs(60);
const MIN_MEMORY: u64 = 1 << 20;
const MAX_MEMORY: u64 = 4 << 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    defaults: RawTenant,
    #[serde(default)]
    plugins: BTreeMap<String, Spanned<RawPlugin>>,
    #[serde(default)]
    tenants: BTreeMap<String, Spanned<RawTenant>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    chain: Option<Vec<Spanned<String>>>,
    /// Refused with a message: not enforced per policy (the size limit is
    /// the config's `[uploads] max_size`).
    max_upload_size: Option<Spanned<ByteSize>>,
    allowed_types: Option<Vec<String>>,
    /// Read from `[defaults]` only: the default of each plugin's `on_failure`.
    on_plugin_failure: Option<Spanned<OnFailure>>,
    limits: Option<RawLimits>,
}

/// `[defaults.limits]` or `[tenants.<name>.limits]`. Spans point messages at
/// the offending key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    requests_per_second: Option<Spanned<f64>>,
    requests_burst: Option<Spanned<u32>>,
    uploads_per_second: Option<Spanned<f64>>,
    uploads_burst: Option<Spanned<u32>>,
    concurrent_uploads: Option<u32>,
    quota: Option<ByteSize>,
    share: Option<Spanned<u32>>,
    /// Appliance-wide: only in `[defaults.limits]`.
    ingress_bytes_per_second: Option<Spanned<ByteSize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    path: String,
    sha256: Spanned<String>,
    #[serde(default = "default_deadline", with = "humantime_serde")]
    deadline: Duration,
    #[serde(default = "default_memory")]
    memory_limit: ByteSize,
    on_failure: Option<OnFailure>,
    #[serde(default)]
    disable_after_failures: u32,
    #[serde(default)]
    config: Option<toml::Table>,
}

fn default_deadline() -> Duration {
    Duration::from_secs(2)
}

fn default_memory() -> ByteSize {
    ByteSize::mib(64)
}

/// A validation problem and where in the text it lies.
struct Located {
    at: usize,
    message: String,
}

fn at(at: usize, message: impl Into<String>) -> Located {
    Located {
        at,
        message: message.into(),
    }
}

pub fn parse(path: &Path, text: &str) -> Result<Policy, Error> {
    let invalid = |located: Located| Error::Invalid {
        path: path.to_owned(),
        line: crate::config::line_of(text, located.at),
        message: located.message,
    };
    let raw: RawPolicy = toml::from_str(text).map_err(|err| {
        invalid(at(
            err.span().map_or(0, |s| s.start),
            err.message().trim_end_matches('.'),
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(raw, base).map_err(invalid).map(|mut policy| {
        policy.source = path.to_owned();
        policy
    })
}

fn validate(raw: RawPolicy, base: &Path) -> Result<Policy, Located> {
    let on_failure = raw
        .defaults
        .on_plugin_failure
        .as_ref()
        .map_or(OnFailure::Quarantine, |spanned| *spanned.get_ref());
    let mut plugins = BTreeMap::new();
    for (name, spanned) in raw.plugins {
        let span = spanned.span().start;
        let plugin = plugin(&name, spanned.into_inner(), base, on_failure, span)?;
        plugins.insert(name, plugin);
    }
    let mut raw_defaults = raw.defaults;
    let ingress_bytes_per_second = raw_defaults
        .limits
        .as_mut()
        .and_then(|limits| limits.ingress_bytes_per_second.take())
        .map(|spanned| spanned.into_inner().as_u64());
    let defaults = tenant(raw_defaults, None, &plugins)?;
    let mut tenants = BTreeMap::new();
    for (name, spanned) in raw.tenants {
        let span = spanned.span().start;
        if !valid_tenant_name(&name) {
            return Err(at(
                span,
                format!("tenant name {name:?} is not 1 to 64 of [a-z0-9_-]"),
            ));
        }
        tenants.insert(
            name,
            tenant(spanned.into_inner(), Some(&defaults), &plugins)?,
        );
    }
    Ok(Policy {
        source: Default::default(),
        plugins,
        defaults,
        tenants,
        ingress_bytes_per_second,
    })
}

fn plugin(
    name: &str,
    raw: RawPlugin,
    base: &Path,
    default_on_failure: OnFailure,
    span: usize,
) -> Result<PluginPolicy, Located> {
    if !valid_plugin_name(name) {
        return Err(at(
            span,
            format!("plugin name {name:?} is not 1 to 64 of [a-z0-9_-]"),
        ));
    }
    let sha256 = raw.sha256.get_ref().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(at(
            raw.sha256.span().start,
            format!(
                "plugin {name}: sha256 must be 64 hex digits (the pin printed by `strongroom plugin install`)"
            ),
        ));
    }
    if raw.deadline.is_zero() || raw.deadline > MAX_DEADLINE {
        return Err(at(
            span,
            format!("plugin {name}: deadline must be between 1ms and 60s"),
        ));
    }
    let memory_limit = raw.memory_limit.as_u64();
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&memory_limit) {
        return Err(at(
            span,
            format!("plugin {name}: memory_limit must be between 1MiB and 4GiB"),
        ));
    }
    let config = raw.config.unwrap_or_default();
    let config_json = serde_json::to_string(&config)
        .map_err(|e| at(span, format!("plugin {name}: config: {e}")))?;
    Ok(PluginPolicy {
        name: name.to_owned(),
        path: base.join(&raw.path),
        sha256,
        deadline: raw.deadline,
        memory_limit,
        on_failure: raw.on_failure.unwrap_or(default_on_failure),
        disable_after_failures: raw.disable_after_failures,
        config_json,
    })
}

/// A tenant section over the defaults (or the defaults themselves).
fn tenant(
    raw: RawTenant,
    defaults: Option<&TenantPolicy>,
    plugins: &BTreeMap<String, PluginPolicy>,
) -> Result<TenantPolicy, Located> {
    if let Some(size) = &raw.max_upload_size {
        return Err(at(
            size.span().start,
            "max_upload_size is not enforced per policy: the appliance-wide limit is \
             [uploads] max_size in the config (a tenant's bytes are limited by its `quota`)",
        ));
    }
    if let (Some(on_failure), Some(_)) = (&raw.on_plugin_failure, defaults) {
        return Err(at(
            on_failure.span().start,
            "on_plugin_failure is read from [defaults] only (the default of every plugin's \
             on_failure); set on_failure in a [plugins.<name>] section instead",
        ));
    }
    let chain = match raw.chain {
        Some(chain) => checked_chain(chain, plugins)?,
        None => defaults.map(|d| d.chain.clone()).unwrap_or_default(),
    };
    let own_limits = match raw.limits {
        Some(limits) => checked_limits(limits)?,
        None => LimitsOverride::default(),
    };
    Ok(TenantPolicy {
        limits: own_limits.or(defaults.map(|d| d.limits).unwrap_or_default()),
        chain,
        allowed_types: raw
            .allowed_types
            .or_else(|| defaults.map(|d| d.allowed_types.clone()))
            .unwrap_or_default(),
    })
}

/// Validates a limits section. The appliance-wide ingress rate has been
/// taken out of `[defaults.limits]`; anywhere else it is an error.
fn checked_limits(raw: RawLimits) -> Result<LimitsOverride, Located> {
    if let Some(ingress) = &raw.ingress_bytes_per_second {
        return Err(at(
            ingress.span().start,
            "ingress_bytes_per_second is appliance-wide: set it in [defaults.limits] \
             (a tenant's part of it is its `share`)",
        ));
    }
    use super::{check_burst, check_rate, check_share};
    Ok(LimitsOverride {
        requests_per_second: checked("requests_per_second", raw.requests_per_second, check_rate)?,
        requests_burst: checked("requests_burst", raw.requests_burst, check_burst)?,
        uploads_per_second: checked("uploads_per_second", raw.uploads_per_second, check_rate)?,
        uploads_burst: checked("uploads_burst", raw.uploads_burst, check_burst)?,
        concurrent_uploads: raw.concurrent_uploads,
        quota: raw.quota.map(|q| q.as_u64()),
        share: checked("share", raw.share, check_share)?,
    })
}

/// A limit's value if `check` accepts it, or a message at its line.
fn checked<T: Copy>(
    key: &str,
    value: Option<Spanned<T>>,
    check: fn(T) -> Result<(), String>,
) -> Result<Option<T>, Located> {
    let Some(value) = value else {
        return Ok(None);
    };
    let (start, value) = (value.span().start, *value.get_ref());
    check(value).map_err(|problem| at(start, format!("{key} {problem}")))?;
    Ok(Some(value))
}

fn checked_chain(
    chain: Vec<Spanned<String>>,
    plugins: &BTreeMap<String, PluginPolicy>,
) -> Result<Vec<String>, Located> {
    let mut names: Vec<String> = Vec::with_capacity(chain.len());
    for entry in chain {
        let name = entry.get_ref();
        if !plugins.contains_key(name) {
            return Err(at(
                entry.span().start,
                format!("chain names plugin {name:?}, which no [plugins.{name}] section defines"),
            ));
        }
        if names.contains(name) {
            return Err(at(
                entry.span().start,
                format!("chain names plugin {name:?} twice"),
            ));
        }
        names.push(entry.into_inner());
    }
    Ok(names)
}

fn valid_tenant_name(name: &str) -> bool {
    valid_plugin_name(name)
}

fn valid_plugin_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(text: &str) -> Result<Policy, Error> {
        super::parse(Path::new("policies/test.toml"), text)
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn one_plugin(extra: &str) -> String {
        format!("[plugins.scan]\npath = \"scan.wasm\"\nsha256 = \"{PIN}\"\n{extra}\n")
    }

    #[test]
    fn a_minimal_policy_has_quarantine_on_failure_and_no_plugins() {
        let policy = parse("").unwrap();
        assert!(policy.plugins.is_empty());
        assert!(policy.chain("anyone").is_empty());
    }

    #[test]
    fn keys_the_appliance_would_not_enforce_are_refused_with_their_line() {
        let size = one_plugin("") + "[defaults]\nchain = [\"scan\"]\nmax_upload_size = \"1GiB\"\n";
        let err = parse(&size).unwrap_err().to_string();
        assert!(
            err.contains("max_upload_size is not enforced per policy"),
            "{err}"
        );
        assert!(
            err.contains(&format!("line {}", size.lines().count())),
            "{err}"
        );
        let failure = one_plugin("")
            + "[defaults]\non_plugin_failure = \"reject\"\n"
            + "[tenants.acme]\non_plugin_failure = \"accept\"\n";
        let err = parse(&failure).unwrap_err().to_string();
        assert!(
            err.contains("on_plugin_failure is read from [defaults] only"),
            "{err}"
        );
        assert!(
            err.contains(&format!("line {}", failure.lines().count())),
            "{err}"
        );
    }

    #[test]
    fn tenants_inherit_the_defaults_they_do_not_override() {
        let text = one_plugin("[plugins.scan.config]\nlimit = 3\n")
            + "[defaults]\nchain = [\"scan\"]\n"
            + "[tenants.acme]\nallowed_types = [\"pdf\"]\n";
        let policy = parse(&text).unwrap();
        let acme = policy.for_tenant("acme");
        assert_eq!(acme.chain, vec!["scan".to_owned()]);
        assert_eq!(acme.allowed_types, vec!["pdf".to_owned()]);
        assert_eq!(
            policy.for_tenant("other").allowed_types,
            Vec::<String>::new()
        );
        let scan = &policy.plugins["scan"];
        assert_eq!(scan.path, Path::new("policies/scan.wasm"));
        assert_eq!(scan.config_json, r#"{"limit":3}"#);
        assert_eq!(scan.deadline, Duration::from_secs(2));
    }

    #[test]
    fn an_unknown_key_names_the_file_and_line() {
        let text = one_plugin("deadlin = \"1s\"");
        assert!(
            message(&text).starts_with("policy policies/test.toml line 4: "),
            "{}",
            message(&text)
        );
        assert!(message(&text).contains("deadlin"));
    }

    #[test]
    fn a_chain_naming_an_undefined_plugin_points_at_the_entry() {
        let text = one_plugin("") + "\n[defaults]\nchain = [\"scan\",\n  \"virus\"]\n";
        let err = message(&text);
        assert!(
            err.starts_with("policy policies/test.toml line 8: "),
            "{err}"
        );
        assert!(err.contains("\"virus\""), "{err}");
    }

    #[test]
    fn a_malformed_pin_is_refused_with_its_line() {
        let err = message("[plugins.scan]\npath = \"scan.wasm\"\nsha256 = \"abc\"\n");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        assert!(message(&one_plugin("deadline = \"5m\"")).contains("deadline"));
        assert!(message(&one_plugin("memory_limit = \"1KiB\"")).contains("memory_limit"));
    }

    fn base_limits() -> super::super::LimitsTable {
        super::super::LimitsTable::uniform(0, super::super::Limits::UNLIMITED)
    }

    #[test]
    fn limits_fall_through_tenant_then_defaults_then_the_config() {
        let text = "[defaults.limits]\nrequests_per_second = 5\nquota = \"1GiB\"\n\
                    ingress_bytes_per_second = \"10MiB\"\n\
                    [tenants.acme.limits]\nrequests_burst = 7\nshare = 3\nquota = \"0\"\n\
                    [tenants.quiet]\nchain = []\n";
        let table = parse(text).unwrap().limits_table(&base_limits());
        assert_eq!(table.ingress_bytes_per_second, 10 << 20);
        let acme = table.for_tenant("acme");
        assert_eq!(acme.requests_per_second, 5.0);
        assert_eq!(acme.requests_burst, 7);
        assert_eq!(acme.share, 3);
        assert_eq!(acme.quota, 0);
        let quiet = table.for_tenant("quiet");
        assert_eq!(quiet.quota, 1 << 30);
        assert_eq!(quiet.requests_burst, 1);
        assert_eq!(table.for_tenant("anyone else"), &table.defaults);
        assert_eq!(table.defaults.uploads_per_second, 0.0);
    }

    #[test]
    fn bad_limits_name_the_key_and_its_line() {
        let err = message("[tenants.acme.limits]\nrequests_burst = 2\n\nshare = 0\n");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("share must be from 1"), "{err}");
        let err = message("[defaults.limits]\nuploads_per_second = -1\n");
        assert!(
            err.contains("line 2") && err.contains("uploads_per_second"),
            "{err}"
        );
        let err = message("[defaults.limits]\nrequests_burst = 0\n");
        assert!(err.contains("requests_burst must be from 1"), "{err}");
        let err = message("[tenants.acme.limits]\ningress_bytes_per_second = \"1MiB\"\n");
        assert!(
            err.contains("line 2") && err.contains("appliance-wide"),
            "{err}"
        );
        let err = message("[defaults.limits]\nrequests_per_sec = 3\n");
        assert!(
            err.contains("line 2") && err.contains("requests_per_sec"),
            "{err}"
        );
    }

    #[test]
    fn the_on_failure_rule_of_a_plugin_defaults_to_the_policy_default() {
        let text = one_plugin("") + "[defaults]\non_plugin_failure = \"accept\"\n";
        assert_eq!(
            parse(&text).unwrap().plugins["scan"].on_failure,
            OnFailure::Accept
        );
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    #[test]
    fn the_shipped_default_policy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml");
        let policy = Policy::load(&path).unwrap();
        let chain: Vec<&str> = policy
            .chain("default")
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(chain, ["content-inspector", "provenance", "anomaly"]);
        assert_eq!(policy.plugins["anomaly"].on_failure, OnFailure::Accept);
    }
}
