//! A plugin's configuration: the JSON text the host returns from `host.config()`,
//! which is the plugin's table in the policy. Parsed once per inspection.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The plugin's policy table, with typed getters.
///
/// A key that is absent reads as `None` (or the default); a key that is present
/// with the wrong type is an admin's mistake and [`Config::get`] panics naming
/// it, which the host records as a `failed` verdict with the message in its log.
/// Use [`Config::try_get`] to handle that case yourself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    table: Map<String, Value>,
}

#[derive(Debug)]
pub enum ConfigError {
    /// The host's config text is not JSON.
    Syntax(serde_json::Error),
    /// The config is JSON but not an object.
    NotAnObject,
    /// `key` is present but does not have the type asked for.
    Type {
        key: String,
        source: serde_json::Error,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax(e) => write!(f, "plugin config is not valid JSON: {e}"),
            ConfigError::NotAnObject => f.write_str("plugin config is not a JSON object"),
            ConfigError::Type { key, source } => write!(f, "plugin config key '{key}': {source}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Syntax(e) | ConfigError::Type { source: e, .. } => Some(e),
            ConfigError::NotAnObject => None,
        }
    }
}

impl Config {
    /// Parses the host's config text. Empty text and `null` are an empty table.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        match serde_json::from_str(text).map_err(ConfigError::Syntax)? {
            Value::Object(table) => Ok(Config { table }),
            Value::Null => Ok(Config::default()),
            _ => Err(ConfigError::NotAnObject),
        }
    }

    /// Wraps a JSON value, for tests: `Config::from_value(json!({"limit": 10}))`.
    pub fn from_value(value: Value) -> Result<Config, ConfigError> {
        match value {
            Value::Object(table) => Ok(Config { table }),
            Value::Null => Ok(Config::default()),
            _ => Err(ConfigError::NotAnObject),
        }
    }

    /// `Ok(None)` when `key` is absent (or `null`), an error when it has another type.
    pub fn try_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.table.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|source| ConfigError::Type {
                    key: key.to_owned(),
                    source,
                }),
        }
    }

    /// The value under `key`, or `None` when absent. Panics (a `failed` verdict,
    /// logged with the key) when the value has another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.try_get(key).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The value under `key`, or `default` when absent; panics like [`Config::get`].
    pub fn get_or<T: DeserializeOwned>(&self, key: &str, default: T) -> T {
        self.get(key).unwrap_or(default)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The keys present, to warn about ones a plugin does not know.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.table.keys().map(String::as_str)
    }

    /// The raw table.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn empty_and_null_are_an_empty_table() {
        assert_eq!(Config::from_json("").unwrap(), Config::default());
        assert_eq!(Config::from_json(" null ").unwrap(), Config::default());
        assert!(matches!(
            Config::from_json("[1]"),
            Err(ConfigError::NotAnObject)
        ));
        assert!(matches!(
            Config::from_json("{"),
            Err(ConfigError::Syntax(_))
        ));
    }

    #[test]
    fn typed_getters() {
        let c = Config::from_json(
            r#"{"ratio": 100, "types": ["pdf", "png"], "keys": {"a": "b"}, "off": null}"#,
        )
        .unwrap();
        assert_eq!(c.get::<f64>("ratio"), Some(100.0));
        assert_eq!(c.get::<u32>("ratio"), Some(100));
        assert_eq!(c.get::<Vec<String>>("types").unwrap(), ["pdf", "png"]);
        assert_eq!(c.get::<BTreeMap<String, String>>("keys").unwrap()["a"], "b");
        assert_eq!(c.get::<bool>("off"), None);
        assert_eq!(c.get_or("missing", 7u8), 7);
        let err = c.try_get::<String>("ratio").unwrap_err().to_string();
        assert!(
            err.starts_with("plugin config key 'ratio': invalid type"),
            "{err}"
        );
    }

    #[test]
    #[should_panic(expected = "plugin config key 'ratio'")]
    fn get_panics_naming_the_key_on_a_type_mismatch() {
        let c = Config::from_json(r#"{"ratio": "high"}"#).unwrap();
        let _: Option<f64> = c.get("ratio");
    }
}
