//! What an audit record says, and its exact bytes. Owns the record format;
//! never reads or writes files.
//!
//! A record is one line of canonical JSON: the fields below in this order,
//! absent optional fields left out, no whitespace, lowercase hex for hashes,
//! then `\n`. The leaf hashed into the Merkle tree is the JSON without the
//! newline. "Canonical" means there is exactly one accepted encoding of a
//! record: a reader re-encodes what it parsed and refuses a line that differs.
//!
//! ```text
//! {"v":1,"i":17,"prev":"<64 hex>","time":"2025-06-01T12:00:00.123Z","kind":"commit",
//!  "outcome":"ok","actor":"...","tenant":"acme","request":"...","upload":"<32 hex>",
//!  "size":1048576,"offset":1048576,"sha256":"<64 hex>","name":"<64 hex>",
//!  "subject":"...","reason":"..."}
//! ```
//!
//! `i` is the record's index in the log and `prev` the leaf hash of record
//! `i - 1` (absent in record 0). Neither adds security (only the signed
//! checkpoints do): they let a verifier name the exact record that was
//! dropped, moved or edited instead of a range between two checkpoints.
//!
//! No field may carry a raw filename, a token or a key: names go in `name`
//! as a [`KeyedName`], which only the log's keyed hash can make, and free
//! text is limited to short visible-ASCII identifiers.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::merkle::Hash;
use crate::id::UploadId;

/// The record format version written in `v`.
pub const RECORD_VERSION: u32 = 1;

/// The longest record line, newline excluded. Field limits keep real records
/// far below it (about 1 KiB at most); a longer line is not a record.
pub const MAX_RECORD_LEN: usize = 4096;

/// The longest identifier field (actor, tenant, request id, subject).
pub const MAX_TEXT_LEN: usize = 128;

/// The longest reason code.
pub const MAX_REASON_LEN: usize = 64;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An upload was created (tus POST).
    Create,
    /// Bytes were appended to an upload (tus PATCH), or an attempt to.
    Resume,
    /// An upload was committed into an object.
    Commit,
    /// The plugin chain settled on a verdict for an upload.
    Verdict,
    /// An upload was refused by its inspection and destroyed. (A request
    /// refused for other reasons is its attempt's kind with outcome
    /// `denied` and the error code as its reason.)
    Reject,
    /// An object was put in quarantine.
    Quarantine,
    /// A quarantined object was released.
    Release,
    /// An upload or object was deleted (by a client, an admin or expiry).
    Delete,
    /// An object was downloaded.
    Download,
    /// An access token was issued.
    TokenIssue,
    /// An access token was revoked.
    TokenRevoke,
    /// A key (KEK, audit or TLS key) was rotated.
    KeyRotation,
    /// The policy was reloaded (or a reload was refused).
    PolicyReload,
    /// A request failed authentication.
    AuthFailure,
}

/// How the attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Ok,
    /// It was refused: authentication, authorisation, policy or limits.
    Denied,
    /// It failed for a reason on our side.
    Failed,
}

/// A name (a client's filename) after the log's keyed hash: 64 lowercase
/// hex digits of HMAC-SHA256 under the appliance's audit name key. Equal
/// names give equal values in one appliance, so an auditor can follow a file
/// without the log ever holding its name. Only [`super::Audit::keyed_name`]
/// makes one, so a raw name cannot be put in a record by mistake.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyedName(String);

impl KeyedName {
    pub(super) fn from_tag(tag: &Hash) -> KeyedName {
        KeyedName(hex::encode(tag))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyedName({})", self.0)
    }
}

/// One thing to record: an attempt or a state change. Built with
/// [`Event::new`] and the setters; the log adds the index, time and chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub outcome: Outcome,
    /// Who acted: a token's subject or id, `admin`, `system`, or the client
    /// address when unauthenticated. Never a token or a password.
    pub actor: Option<String>,
    pub tenant: Option<String>,
    /// The request id the response and the logs carry.
    pub request_id: Option<String>,
    /// The upload, or the object it became.
    pub upload: Option<UploadId>,
    /// The upload's declared or final length in bytes.
    pub size: Option<u64>,
    /// Bytes stored so far (the tus offset) when the event happened.
    pub offset: Option<u64>,
    /// The object's SHA-256.
    pub sha256: Option<Hash>,
    /// The client's filename, keyed.
    pub name: Option<KeyedName>,
    /// What a non-upload event is about: a token id, a key id, a policy file.
    pub subject: Option<String>,
    /// A machine-readable reason code (`offset_mismatch`, `eicar`): 1 to 64
    /// of `[a-z0-9_.-]`.
    pub reason: Option<String>,
}

impl Event {
    pub fn new(kind: EventKind, outcome: Outcome) -> Event {
        Event {
            kind,
            outcome,
            actor: None,
            tenant: None,
            request_id: None,
            upload: None,
            size: None,
            offset: None,
            sha256: None,
            name: None,
            subject: None,
            reason: None,
        }
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Event {
        self.actor = Some(actor.into());
        self
    }

    pub fn tenant(mut self, tenant: impl Into<String>) -> Event {
        self.tenant = Some(tenant.into());
        self
    }

    pub fn request_id(mut self, request_id: impl Into<String>) -> Event {
        self.request_id = Some(request_id.into());
        self
    }

    pub fn upload(mut self, upload: UploadId) -> Event {
        self.upload = Some(upload);
        self
    }

    pub fn size(mut self, size: u64) -> Event {
        self.size = Some(size);
        self
    }

    pub fn offset(mut self, offset: u64) -> Event {
        self.offset = Some(offset);
        self
    }

    pub fn sha256(mut self, digest: Hash) -> Event {
        self.sha256 = Some(digest);
        self
    }

    pub fn name(mut self, name: KeyedName) -> Event {
        self.name = Some(name);
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Event {
        self.subject = Some(subject.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    /// Checks the free-text fields: the limits keep records short and make
    /// a pasted filename, sentence or multi-line secret fail loudly in tests
    /// instead of landing in the log.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let texts = [
            ("actor", &self.actor),
            ("tenant", &self.tenant),
            ("request_id", &self.request_id),
            ("subject", &self.subject),
        ];
        for (field, value) in texts {
            if let Some(value) = value
                && !is_identifier(value)
            {
                return Err(InvalidField {
                    field,
                    reason: "must be 1 to 128 visible ASCII characters",
                });
            }
        }
        if let Some(reason) = &self.reason
            && !is_reason_code(reason)
        {
            return Err(InvalidField {
                field: "reason",
                reason: "must be 1 to 64 of [a-z0-9_.-]",
            });
        }
        Ok(())
    }
}

/// An event field that breaks its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: &'static str,
}

/// `text` made fit for an identifier field (actor, tenant, subject):
/// anything but visible ASCII becomes `_` and it is cut to
/// [`MAX_TEXT_LEN`]; `None` when empty. For values that come from elsewhere
/// (a plugin's name, a token's subject), so a record is never refused for
/// its form. Never use it on a filename or a secret: those have no field.
pub fn identifier(text: &str) -> Option<String> {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(MAX_TEXT_LEN)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// `text` made fit for a reason code: lowercased, anything outside
/// `[a-z0-9_.-]` becomes `_`, cut to [`MAX_REASON_LEN`]; `None` when empty.
pub fn reason_code(text: &str) -> Option<String> {
    let cleaned: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_REASON_LEN)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

fn is_identifier(text: &str) -> bool {
    (1..=MAX_TEXT_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

fn is_reason_code(text: &str) -> bool {
    (1..=MAX_REASON_LEN).contains(&text.len())
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    /// When the log appended it, to the millisecond.
    pub time: SystemTime,
    pub event: Event,
}

/// A parsed record line and the `prev` hash it carries.
#[derive(Debug)]
pub(super) struct Decoded {
    pub record: Record,
    pub prev: Option<Hash>,
}

/// The JSON shape; field order here is the canonical order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    i: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
    time: String,
    kind: EventKind,
    outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload: Option<UploadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Milliseconds since the Unix epoch, as records store time.
pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn format_time(millis: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
}

/// The record line for `event` at `index`, without its newline. The event
/// must have passed [`Event::validate`].
pub(super) fn encode(index: u64, prev: Option<&Hash>, millis: u64, event: &Event) -> Vec<u8> {
    let wire = Wire {
        v: RECORD_VERSION,
        i: index,
        prev: prev.map(hex::encode),
        time: format_time(millis),
        kind: event.kind,
        outcome: event.outcome,
        actor: event.actor.clone(),
        tenant: event.tenant.clone(),
        request: event.request_id.clone(),
        upload: event.upload,
        size: event.size,
        offset: event.offset,
        sha256: event.sha256.as_ref().map(hex::encode),
        name: event.name.as_ref().map(|name| name.0.clone()),
        subject: event.subject.clone(),
        reason: event.reason.clone(),
    };
    // A struct of strings and integers always serializes.
    serde_json::to_vec(&wire).expect("a record serializes")
}

/// Parses a record line (without its newline), accepting only the
/// canonical encoding. The error says what is wrong, for a message.
pub(super) fn decode(line: &[u8]) -> Result<Decoded, String> {
    if line.len() > MAX_RECORD_LEN {
        return Err(format!("longer than {MAX_RECORD_LEN} bytes"));
    }
    let wire: Wire = serde_json::from_slice(line).map_err(|err| format!("not a record: {err}"))?;
    if wire.v != RECORD_VERSION {
        return Err(format!("unknown record version {}", wire.v));
    }
    let canonical = serde_json::to_vec(&wire).expect("a record serializes");
    if canonical != line {
        return Err("not in canonical form (fields, order, spacing or escapes differ)".into());
    }
    let time = humantime::parse_rfc3339(&wire.time)
        .ok()
        .filter(|time| format_time(millis_of(*time)) == wire.time)
        .ok_or("time is not an RFC 3339 UTC time with milliseconds")?;
    let prev = wire
        .prev
        .as_deref()
        .map(|text| parse_hash(text).ok_or("prev is not 64 lowercase hex digits"))
        .transpose()?;
    let sha256 = wire
        .sha256
        .as_deref()
        .map(|text| parse_hash(text).ok_or("sha256 is not 64 lowercase hex digits"))
        .transpose()?;
    let name = wire
        .name
        .map(|text| {
            parse_hash(&text)
                .map(|_| KeyedName(text))
                .ok_or("name is not 64 lowercase hex digits")
        })
        .transpose()?;
    let event = Event {
        kind: wire.kind,
        outcome: wire.outcome,
        actor: wire.actor,
        tenant: wire.tenant,
        request_id: wire.request,
        upload: wire.upload,
        size: wire.size,
        offset: wire.offset,
        sha256,
        name,
        subject: wire.subject,
        reason: wire.reason,
    };
    event
        .validate()
        .map_err(|invalid| format!("{} {}", invalid.field, invalid.reason))?;
    Ok(Decoded {
        record: Record {
            index: wire.i,
            time,
            event,
        },
        prev,
    })
}

fn millis_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// 64 lowercase hex digits as a hash.
pub(super) fn parse_hash(text: &str) -> Option<Hash> {
    let lowercase = text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut hash = [0u8; 32];
    (lowercase && text.len() == 64 && hex::decode_to_slice(text, &mut hash).is_ok()).then_some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: u64 = 1_750_000_000_123;

    fn full_event() -> Event {
        Event::new(EventKind::Commit, Outcome::Ok)
            .actor("token:7f3a")
            .tenant("acme")
            .request_id("req-42")
            .upload(UploadId::from_bytes([0xab; 16]))
            .size(1 << 20)
            .offset(1 << 20)
            .sha256([0x11; 32])
            .name(KeyedName::from_tag(&[0x22; 32]))
            .subject("kek:local:acme:v2")
            .reason("accepted")
    }

    #[test]
    fn a_record_is_one_line_of_canonical_json_in_a_fixed_order() {
        let line = encode(17, Some(&[0xcd; 32]), TIME, &full_event());
        let text = String::from_utf8(line.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"v\":1,\"i\":17,\"prev\":\"{prev}\",\"time\":\"2025-06-15T15:06:40.123Z\",\
                 \"kind\":\"commit\",\"outcome\":\"ok\",\"actor\":\"token:7f3a\",\
                 \"tenant\":\"acme\",\"request\":\"req-42\",\"upload\":\"{upload}\",\
                 \"size\":1048576,\"offset\":1048576,\"sha256\":\"{sha}\",\"name\":\"{name}\",\
                 \"subject\":\"kek:local:acme:v2\",\"reason\":\"accepted\"}}",
                prev = "cd".repeat(32),
                upload = "ab".repeat(16),
                sha = "11".repeat(32),
                name = "22".repeat(32),
            )
        );
        let decoded = decode(&line).unwrap();
        assert_eq!(decoded.prev, Some([0xcd; 32]));
        assert_eq!(decoded.record.index, 17);
        assert_eq!(decoded.record.event, full_event());
        assert_eq!(millis_of(decoded.record.time), TIME);
    }

    #[test]
    fn absent_fields_are_left_out() {
        let line = encode(
            0,
            None,
            TIME,
            &Event::new(EventKind::AuthFailure, Outcome::Denied),
        );
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"auth_failure","outcome":"denied"}"#
        );
        let decoded = decode(&line).unwrap();
        assert_eq!(decoded.prev, None);
        assert_eq!(
            decoded.record.event,
            Event::new(EventKind::AuthFailure, Outcome::Denied)
        );
    }

    #[test]
    fn only_the_canonical_encoding_is_accepted() {
        let good = r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","tenant":"acme"}"#;
        assert!(decode(good.as_bytes()).is_ok());
        let variants = [
            // Whitespace.
            r#"{"v":1, "i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","tenant":"acme"}"#,
            // Field order.
            r#"{"i":0,"v":1,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","tenant":"acme"}"#,
            // An escape where a plain character will do.
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","tenant":"\u0061cme"}"#,
            // An explicit null for an absent field.
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","tenant":"acme","size":null}"#,
            // Seconds without milliseconds; another time zone.
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40Z","kind":"create","outcome":"ok","tenant":"acme"}"#,
            r#"{"v":1,"i":0,"time":"2025-06-15T17:06:40.123+02:00","kind":"create","outcome":"ok","tenant":"acme"}"#,
            // Unknown field, unknown kind, unknown version, duplicate field.
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","tenant":"acme","x":1}"#,
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"upload","outcome":"ok","tenant":"acme"}"#,
            r#"{"v":2,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","tenant":"acme"}"#,
            r#"{"v":1,"i":0,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok"}"#,
            // Uppercase hex.
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
            // A field that breaks its rule: a filename with a space.
            r#"{"v":1,"i":0,"time":"2025-06-15T15:06:40.123Z","kind":"create","outcome":"ok","subject":"my report.pdf"}"#,
            "",
            "{",
        ];
        for variant in variants {
            assert!(decode(variant.as_bytes()).is_err(), "accepted {variant}");
        }
        assert!(decode(&vec![b' '; MAX_RECORD_LEN + 1]).is_err());
    }

    #[test]
    fn free_text_fields_are_short_visible_identifiers() {
        let ok = Event::new(EventKind::Download, Outcome::Ok)
            .actor("alice@example.com")
            .tenant("acme")
            .request_id("01J0ABCDEF")
            .subject("2001:db8::1");
        assert_eq!(ok.validate(), Ok(()));
        let bad = [
            Event::new(EventKind::Download, Outcome::Ok).actor(""),
            Event::new(EventKind::Download, Outcome::Ok).actor("a".repeat(129)),
            Event::new(EventKind::Download, Outcome::Ok).tenant("my tenant"),
            Event::new(EventKind::Download, Outcome::Ok).request_id("a\nb"),
            Event::new(EventKind::Download, Outcome::Ok).subject("résumé.pdf"),
            Event::new(EventKind::Download, Outcome::Ok).reason("Offset Mismatch"),
            Event::new(EventKind::Download, Outcome::Ok).reason("x".repeat(65)),
        ];
        for event in bad {
            assert!(event.validate().is_err(), "{event:?}");
        }
    }

    #[test]
    fn foreign_text_is_made_to_fit_its_field() {
        assert_eq!(
            identifier("token:7f3a (key:01)"),
            Some("token:7f3a_(key:01)".into())
        );
        assert_eq!(identifier("résumé"), Some("r_sum_".into()));
        assert_eq!(identifier(""), None);
        assert_eq!(identifier(&"x".repeat(300)).unwrap().len(), MAX_TEXT_LEN);
        assert_eq!(
            reason_code("EICAR test-file"),
            Some("eicar_test-file".into())
        );
        assert_eq!(reason_code(&"r".repeat(100)).unwrap().len(), MAX_REASON_LEN);
        assert_eq!(reason_code(""), None);
        for text in ["a b", "\u{1F600}", "\n"] {
            let event = Event::new(EventKind::Verdict, Outcome::Ok)
                .subject(identifier(text).unwrap())
                .reason(reason_code(text).unwrap());
            assert_eq!(event.validate(), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn the_longest_record_fits_the_line_limit() {
        let long = "\"".repeat(MAX_TEXT_LEN);
        let event = full_event()
            .actor(long.clone())
            .tenant(long.clone())
            .request_id(long.clone())
            .subject(long)
            .reason("r".repeat(MAX_REASON_LEN))
            .size(u64::MAX)
            .offset(u64::MAX);
        assert_eq!(event.validate(), Ok(()));
        let line = encode(u64::MAX, Some(&[0xff; 32]), u64::MAX / 1_000_000, &event);
        assert!(line.len() <= MAX_RECORD_LEN / 2, "{} bytes", line.len());
        assert_eq!(decode(&line).unwrap().record.event, event);
    }

    #[test]
    fn hashes_parse_only_as_64_lowercase_hex_digits() {
        assert_eq!(parse_hash(&"0a".repeat(32)), Some([0x0a; 32]));
        assert_eq!(parse_hash(&"0A".repeat(32)), None);
        assert_eq!(parse_hash(&"0a".repeat(31)), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
