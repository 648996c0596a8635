//! The plugin's policy table, validated into typed settings. Pure: no host calls.

use strongroom_magic::{ALL_TYPES, FileType};
use strongroom_plugin_sdk::{Config, Severity, Verdict};

/// What to do about a finding whose rule has its own action key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Quarantine,
    Reject,
}

impl Action {
    fn parse(key: &str, value: &str) -> Action {
        match value {
            "accept" => Action::Accept,
            "quarantine" => Action::Quarantine,
            "reject" => Action::Reject,
            other => panic!(
                "plugin config key '{key}': unknown action '{other}', expected accept, quarantine or reject"
            ),
        }
    }

    /// The verdict this action gives, with `code` for a reject.
    pub fn verdict(self, code: &str, message: &str) -> Verdict {
        match self {
            Action::Accept => Verdict::Accept,
            Action::Quarantine => Verdict::Quarantine(message.to_owned()),
            Action::Reject => Verdict::Reject {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        }
    }
}

/// Limits for judging a ZIP from its central directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipLimits {
    /// Declared uncompressed : compressed size, per entry and over the archive.
    pub max_ratio: f64,
    /// Entries (and archives) smaller than this uncompressed are not judged by ratio:
    /// tiny files compress absurdly well and harm nobody.
    pub ratio_min_size: u64,
    pub max_total_uncompressed: u64,
    pub max_entries: u64,
    /// Entries that are archives themselves (.zip, .jar, .gz, ...).
    pub max_nested_archives: u64,
    /// How much of the central directory the tail window can hold.
    pub max_central_directory: usize,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_ratio: 100.0,
            ratio_min_size: 1 << 20,
            max_total_uncompressed: 4 << 30,
            max_entries: 10_000,
            max_nested_archives: 8,
            max_central_directory: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Type names allowed (groups expanded); `None` allows every type.
    pub allowed_types: Option<Vec<FileType>>,
    pub mismatch_action: Action,
    pub polyglot_action: Action,
    pub active_content_action: Action,
    /// Findings of other rules at or above this severity quarantine the upload.
    pub quarantine_severity: Severity,
    pub eicar: bool,
    pub zip: ZipLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_types: None,
            mismatch_action: Action::Quarantine,
            polyglot_action: Action::Quarantine,
            active_content_action: Action::Quarantine,
            quarantine_severity: Severity::High,
            eicar: true,
            zip: ZipLimits::default(),
        }
    }
}

/// Keys this plugin reads; anything else in its table is probably a typo.
pub const KNOWN_KEYS: &[&str] = &[
    "allowed_types",
    "mismatch_action",
    "polyglot_action",
    "active_content_action",
    "quarantine_severity",
    "eicar",
    "zip_max_ratio",
    "zip_ratio_min_size",
    "zip_max_total_uncompressed",
    "zip_max_entries",
    "zip_max_nested_archives",
    "zip_max_central_directory",
];

/// Names that stand for several types in `allowed_types`.
pub const TYPE_GROUPS: &[(&str, &[FileType])] = &[
    (
        "image",
        &[
            FileType::Png,
            FileType::Jpeg,
            FileType::Gif,
            FileType::Webp,
            FileType::Heic,
        ],
    ),
    ("office", &[FileType::Docx, FileType::Xlsx, FileType::Pptx]),
    ("archive", &[FileType::Zip, FileType::Gzip, FileType::Tar]),
    ("video", &[FileType::Mp4, FileType::Mov]),
    (
        "executable",
        &[
            FileType::Elf,
            FileType::Pe,
            FileType::Msdos,
            FileType::MachO,
            FileType::JavaClass,
        ],
    ),
];

impl Settings {
    /// Reads the policy table. Panics (a `failed` verdict naming the key) on values
    /// that cannot be meant: an unknown type or action, a non-positive limit.
    pub fn from_config(config: &Config) -> Settings {
        let d = Settings::default();
        let action = |key: &str, default: Action| {
            config
                .get::<String>(key)
                .map_or(default, |v| Action::parse(key, &v))
        };
        let allowed_types = config.get::<Vec<String>>("allowed_types").map(|names| {
            let mut types = Vec::new();
            for name in &names {
                if let Some((_, group)) = TYPE_GROUPS.iter().find(|(g, _)| g == name) {
                    types.extend_from_slice(group);
                } else if let Some(t) = FileType::from_name(name) {
                    types.push(t);
                } else {
                    let known: Vec<&str> = ALL_TYPES.iter().map(|t| t.name()).collect();
                    panic!(
                        "plugin config key 'allowed_types': unknown type '{name}' (types: {}; groups: {})",
                        known.join(", "),
                        TYPE_GROUPS.iter().map(|(g, _)| *g).collect::<Vec<_>>().join(", ")
                    );
                }
            }
            types
        });
        let quarantine_severity =
            config
                .get::<String>("quarantine_severity")
                .map_or(d.quarantine_severity, |s| {
                    Severity::parse(&s).unwrap_or_else(|| {
                        panic!("plugin config key 'quarantine_severity': unknown severity '{s}'")
                    })
                });
        let positive = |key: &str, default: u64| {
            let v = config.get_or(key, default);
            assert!(v > 0, "plugin config key '{key}': must be positive");
            v
        };
        let max_ratio = config.get_or("zip_max_ratio", d.zip.max_ratio);
        assert!(
            max_ratio >= 1.0,
            "plugin config key 'zip_max_ratio': must be at least 1"
        );
        Settings {
            allowed_types,
            mismatch_action: action("mismatch_action", d.mismatch_action),
            polyglot_action: action("polyglot_action", d.polyglot_action),
            active_content_action: action("active_content_action", d.active_content_action),
            quarantine_severity,
            eicar: config.get_or("eicar", d.eicar),
            zip: ZipLimits {
                max_ratio,
                ratio_min_size: config.get_or("zip_ratio_min_size", d.zip.ratio_min_size),
                max_total_uncompressed: positive(
                    "zip_max_total_uncompressed",
                    d.zip.max_total_uncompressed,
                ),
                max_entries: positive("zip_max_entries", d.zip.max_entries),
                max_nested_archives: config
                    .get_or("zip_max_nested_archives", d.zip.max_nested_archives),
                max_central_directory: positive(
                    "zip_max_central_directory",
                    d.zip.max_central_directory as u64,
                ) as usize,
            },
        }
    }

    pub fn allows(&self, t: FileType) -> bool {
        self.allowed_types
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&t))
    }

    /// Whether any ZIP-family type is allowed (then a ZIP's final type waits for its
    /// central directory).
    pub fn allows_some_zip(&self) -> bool {
        self.allowed_types
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|t| t.is_zip()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> Settings {
        Settings::from_config(&Config::from_json(json).unwrap())
    }

    #[test]
    fn defaults_when_empty() {
        assert_eq!(settings("{}"), Settings::default());
    }

    #[test]
    fn groups_expand_and_names_resolve() {
        let s = settings(
            r#"{"allowed_types": ["pdf", "image", "office"], "mismatch_action": "reject"}"#,
        );
        assert!(s.allows(FileType::Pdf) && s.allows(FileType::Jpeg) && s.allows(FileType::Xlsx));
        assert!(!s.allows(FileType::Zip) && !s.allows(FileType::Elf));
        assert!(s.allows_some_zip());
        assert_eq!(s.mismatch_action, Action::Reject);
    }

    #[test]
    #[should_panic(expected = "unknown type 'exe'")]
    fn unknown_type_names_the_key() {
        settings(r#"{"allowed_types": ["exe"]}"#);
    }

    #[test]
    #[should_panic(expected = "plugin config key 'polyglot_action': unknown action 'drop'")]
    fn unknown_action_names_the_key() {
        settings(r#"{"polyglot_action": "drop"}"#);
    }
}
