//! One upload's inspection: type by content, allow-list, EICAR, polyglots, ZIP
//! bombs and declared-type mismatches. Pure: bytes in, outcome out, no host calls.
//!
//! Memory is bounded whatever the upload size: the first [`HEAD_LEN`] bytes for
//! typing, the scanner's overlap and window, and the ZIP tail window.

use strongroom_magic::{FileType, is_checkable_media_type, is_known_extension, sniff};
use strongroom_plugin_sdk::{Finding, Outcome, Severity, UploadMeta, Verdict};

use crate::scan::{Marker, Scanner};
use crate::settings::Settings;
use crate::zip::{self, EOCD_SEARCH, Parsed, Tail};

/// Bytes kept for typing: enough for any magic and for the first ZIP local headers
/// of an OOXML document.
pub const HEAD_LEN: usize = 64 * 1024;

pub struct Inspector {
    settings: Settings,
    declared_name: Option<String>,
    declared_ext: Option<String>,
    declared_media: Option<String>,
    head: Vec<u8>,
    /// Set once `head` is full (or at finish for smaller uploads).
    detected: Option<FileType>,
    scanner: Scanner,
    tail: Tail,
}

impl Inspector {
    pub fn new(meta: &UploadMeta, settings: Settings) -> Inspector {
        let tail = Tail::new(EOCD_SEARCH + settings.zip.max_central_directory);
        Inspector {
            declared_name: meta.declared_name.clone(),
            declared_ext: meta.extension(),
            declared_media: meta.media_type(),
            head: Vec::with_capacity(HEAD_LEN),
            detected: None,
            scanner: Scanner::new(settings.eicar),
            tail,
            settings,
        }
    }

    /// Takes the next chunk; `Some` is an early decision (a reject the host acts on
    /// at once).
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Outcome> {
        if self.head.len() < HEAD_LEN {
            let take = chunk.len().min(HEAD_LEN - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
            if self.head.len() == HEAD_LEN {
                self.detected = Some(sniff(&self.head));
            }
        }
        let eicar = self.scanner.feed(chunk);
        self.tail.push(chunk);
        if let Some(offset) = eicar {
            return Some(self.eicar(offset));
        }
        let t = self.detected?;
        // A ZIP's final type (zip or an OOXML flavour) waits for the central
        // directory, unless no ZIP-family type is allowed at all.
        let final_type = !t.is_zip() || !self.settings.allows_some_zip();
        (final_type && !self.settings.allows(t)).then(|| self.not_allowed(t))
    }

    /// Judges the whole upload; call once after the last chunk.
    pub fn finish(&mut self) -> Outcome {
        self.scanner.finish();
        let mut t = *self.detected.get_or_insert_with(|| sniff(&self.head));
        let archive = zip::parse(self.tail.bytes(), self.tail.start(), &self.settings.zip);
        if let (true, Parsed::Directory(dir)) = (t.is_zip(), &archive)
            && let Some(kind) = dir.ooxml
        {
            t = kind;
        }
        self.detected = Some(t);

        if let Some(offset) = self.scanner.hits(Marker::Eicar).and_then(|h| h.first()) {
            return self.eicar(offset);
        }
        if !self.settings.allows(t) {
            return self.not_allowed(t);
        }

        let mut out = Outcome::accept().label("detected-type", t.name());
        // Findings whose rule has no action of its own quarantine by severity.
        let mut by_severity: Vec<Finding> = Vec::new();

        if t.is_zip() {
            match &archive {
                Parsed::Directory(dir) => {
                    out = out
                        .label("zip-entries", dir.entries.to_string())
                        .label("zip-uncompressed-bytes", dir.total_uncompressed.to_string());
                    if let Some(reason) = zip::bomb_reason(dir, &self.settings.zip) {
                        let finding =
                            Finding::new("zip-bomb", Severity::Critical).detail(reason.clone());
                        return out.with_finding(finding).escalate(Verdict::Reject {
                            code: "zip-bomb".into(),
                            message: format!(
                                "the archive looks like a decompression bomb: {reason}"
                            ),
                        });
                    }
                    if dir.encrypted > 0 {
                        by_severity.push(Finding::new("zip-encrypted", Severity::Medium).detail(
                            format!("{} encrypted entries cannot be inspected", dir.encrypted),
                        ));
                    }
                }
                Parsed::TooManyEntries { declared } => {
                    let reason = format!(
                        "declares {declared} entries, limit {}",
                        self.settings.zip.max_entries
                    );
                    return out
                        .with_finding(
                            Finding::new("zip-bomb", Severity::Critical).detail(reason.clone()),
                        )
                        .escalate(Verdict::Reject {
                            code: "zip-bomb".into(),
                            message: format!(
                                "the archive looks like a decompression bomb: {reason}"
                            ),
                        });
                }
                Parsed::DirectoryTooLarge { size } => by_severity.push(
                    Finding::new("zip-uninspectable", Severity::High).detail(format!(
                        "central directory of {size} bytes exceeds the {}-byte window",
                        self.settings.zip.max_central_directory
                    )),
                ),
                Parsed::NoArchive => by_severity.push(
                    Finding::new("zip-uninspectable", Severity::High)
                        .detail("no end-of-central-directory record at the end of the upload"),
                ),
                Parsed::Malformed(why) => {
                    by_severity.push(Finding::new("zip-malformed", Severity::High).detail(why))
                }
            }
        }

        // Executables and scripts inside media or documents.
        if t.is_passive_container() {
            let mut polyglot: Vec<Finding> = Vec::new();
            for (marker, what) in [
                (Marker::ElfHeader, "an ELF executable header"),
                (Marker::PeHeader, "a Windows PE executable header"),
                (Marker::DosStub, "a Windows executable stub"),
                (Marker::ScriptTag, "a <script> tag"),
            ] {
                if let Some(offset) = self.scanner.hits(marker).and_then(|h| h.first_after(0)) {
                    polyglot.push(
                        Finding::new("polyglot", Severity::High)
                            .at(offset)
                            .detail(format!("{what} inside a {} at offset {offset}", t.name())),
                    );
                }
            }
            if let Parsed::Directory(dir) = &archive
                && dir.entries > 0
            {
                polyglot.push(
                    Finding::new("polyglot", Severity::High)
                        .at(dir.prefix)
                        .detail(format!(
                            "a ZIP archive of {} entries appended to a {} at offset {}",
                            dir.entries,
                            t.name(),
                            dir.prefix
                        )),
                );
            }
            if let Some(first) = polyglot.first() {
                let message = format!("the file hides {}", first.detail);
                out = out
                    .escalate(self.settings.polyglot_action.verdict("polyglot", &message))
                    .with_findings(polyglot);
            }
        }
        if t == FileType::Pdf {
            if let Some(offset) = self.scanner.hits(Marker::PdfLaunch).and_then(|h| h.first()) {
                by_severity.push(
                    Finding::new("pdf-launch", Severity::High)
                        .at(offset)
                        .detail("PDF /Launch action (opens a file or runs a program)"),
                );
            }
            if let Some(offset) = self
                .scanner
                .hits(Marker::PdfJavaScript)
                .and_then(|h| h.first())
            {
                by_severity.push(
                    Finding::new("pdf-javascript", Severity::Medium)
                        .at(offset)
                        .detail("PDF JavaScript"),
                );
            }
        }
        if t == FileType::Svg
            && let Some(offset) = self.scanner.hits(Marker::ScriptTag).and_then(|h| h.first())
        {
            let finding = Finding::new("svg-script", Severity::High)
                .at(offset)
                .detail(format!("<script> in an SVG image at offset {offset}"));
            out = out
                .escalate(
                    self.settings
                        .active_content_action
                        .verdict("active-content", "SVG images with scripts are not allowed"),
                )
                .with_finding(finding);
        }

        if let Some(finding) = self.mismatch(t) {
            let message = format!("the content is {} but {}", t.name(), finding.detail);
            out = out
                .escalate(
                    self.settings
                        .mismatch_action
                        .verdict("type-mismatch", &message),
                )
                .with_finding(finding);
        }

        if let Some(worst) = by_severity
            .iter()
            .filter(|f| f.severity >= self.settings.quarantine_severity)
            .max_by_key(|f| f.severity)
        {
            out = out.escalate(Verdict::Quarantine(format!(
                "{}: {}",
                worst.rule, worst.detail
            )));
        }
        out.with_findings(by_severity)
    }

    /// The type this upload was detected as, once known.
    pub fn detected(&self) -> Option<FileType> {
        self.detected
    }

    fn eicar(&self, offset: u64) -> Outcome {
        let mut out = Outcome::reject(
            "malware-signature",
            "the upload contains a malware signature (EICAR test file)",
        )
        .with_finding(
            Finding::new("eicar", Severity::Critical)
                .at(offset)
                .detail("EICAR anti-malware test signature"),
        );
        if let Some(t) = self.detected {
            out = out.label("detected-type", t.name());
        }
        out
    }

    fn not_allowed(&self, t: FileType) -> Outcome {
        Outcome::reject(
            "type-not-allowed",
            format!("files of type '{}' are not allowed here", t.name()),
        )
        .with_finding(
            Finding::new("type-not-allowed", Severity::High).detail(format!(
                "detected type '{}' is not in allowed_types",
                t.name()
            )),
        )
        .label("detected-type", t.name())
    }

    /// A finding when the declared extension or media type names another type.
    /// Declarations that claim nothing checkable (no extension we know,
    /// `application/octet-stream`) are not mismatches; neither is content we cannot type.
    fn mismatch(&self, t: FileType) -> Option<Finding> {
        if t == FileType::Unknown {
            return None;
        }
        let mut claims = Vec::new();
        if let Some(ext) = &self.declared_ext
            && is_known_extension(ext)
            && !t.accepts_extension(ext)
        {
            let name = self.declared_name.as_deref().unwrap_or_default();
            claims.push(format!("was named '{name}'"));
        }
        if let Some(media) = &self.declared_media
            && is_checkable_media_type(media)
            && !t.accepts_media_type(media)
        {
            claims.push(format!("was declared as '{media}'"));
        }
        if claims.is_empty() {
            return None;
        }
        let severity = if t.is_executable() || t.is_active_content() {
            Severity::High
        } else {
            Severity::Medium
        };
        Some(Finding::new("type-mismatch", severity).detail(claims.join(" and ")))
    }
}
