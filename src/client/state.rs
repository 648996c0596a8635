//! The state file: which local files have an unfinished upload on which
//! server, so that a later run continues it instead of starting over. One
//! JSON document, rewritten whole and atomically (temp file, fsync, rename)
//! under an advisory lock, so two runs sharing it never lose each other's
//! entries and a crash never leaves half a file. Holds upload URLs, never a
//! credential or a byte of content.
//!
//! An entry is keyed by server, canonical path, size and modification time:
//! a file that changed since its upload began is a new file and starts
//! over.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use super::{Error, joined};

/// The format written; a file with another version is refused, not
/// overwritten.
const VERSION: u32 = 1;

/// Far above any real state file (an entry is a few hundred bytes).
const MAX_STATE: u64 = 64 << 20;

/// Where the state file lives by default: `$XDG_STATE_HOME/strongroom/
/// uploads.json`, else `~/.local/state/strongroom/uploads.json`.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".local/state"),
    };
    Some(base.join("strongroom").join("uploads.json"))
}

/// Which upload a local file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    /// The server's base URL.
    pub server: String,
    /// Canonical (absolute, symlinks resolved).
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
}

impl Key {
    /// The key of the file at `path` as it is now. Blocking.
    pub fn of_file(server: &str, path: &Path) -> std::io::Result<Key> {
        let canonical = fs::canonicalize(path)?;
        let metadata = fs::metadata(&canonical)?;
        if !metadata.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mtime_ns = metadata
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Ok(Key {
            server: server.to_owned(),
            path: canonical,
            size: metadata.len(),
            mtime_ns,
        })
    }
}

/// One unfinished upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub key: Key,
    /// Unix seconds when the upload was created.
    pub created_at: u64,
    pub plan: Plan,
}

/// How the file is being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plan {
    /// One upload of the whole file.
    Single { part: Part },
    /// Partial uploads of consecutive ranges, joined by a final upload
    /// once they are all complete.
    Parallel {
        parts: Vec<Part>,
        final_url: Option<String>,
    },
}

impl Plan {
    pub fn parts(&self) -> &[Part] {
        match self {
            Plan::Single { part } => std::slice::from_ref(part),
            Plan::Parallel { parts, .. } => parts,
        }
    }

    pub fn parts_mut(&mut self) -> &mut [Part] {
        match self {
            Plan::Single { part } => std::slice::from_mut(part),
            Plan::Parallel { parts, .. } => parts,
        }
    }

    /// The URL whose HEAD tells the outcome once everything is sent.
    pub fn result_url(&self) -> Option<&str> {
        match self {
            Plan::Single { part } => Some(&part.url),
            Plan::Parallel { final_url, .. } => final_url.as_deref(),
        }
    }

    /// Bytes the server had acknowledged when last recorded.
    pub fn acknowledged(&self) -> u64 {
        self.parts().iter().map(|p| p.offset).sum()
    }
}

/// An upload of the file's bytes `[start, start + length)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub url: String,
    pub start: u64,
    pub length: u64,
    /// Bytes the server acknowledged when last recorded (informational: a
    /// rerun asks the server with HEAD).
    pub offset: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    uploads: Vec<Entry>,
}

/// The state file at one path.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(path: PathBuf) -> Store {
        Store { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry. A missing file is an empty one.
    pub async fn entries(&self) -> Result<Vec<Entry>, Error> {
        let store = self.clone();
        joined(tokio::task::spawn_blocking(move || store.read_locked()).await)?
    }

    /// The entry for `key`, if any.
    pub async fn get(&self, key: &Key) -> Result<Option<Entry>, Error> {
        let entries = self.entries().await?;
        Ok(entries.into_iter().find(|e| &e.key == key))
    }

    /// Inserts `entry`, replacing the one with its key.
    pub async fn put(&self, entry: Entry) -> Result<(), Error> {
        self.modify(
            move |uploads| match uploads.iter_mut().find(|e| e.key == entry.key) {
                Some(slot) => *slot = entry,
                None => uploads.push(entry),
            },
        )
        .await
    }

    /// Drops the entry for `key` (a finished or abandoned upload).
    pub async fn remove(&self, key: &Key) -> Result<(), Error> {
        let key = key.clone();
        self.modify(move |uploads| uploads.retain(|e| e.key != key))
            .await
    }

    async fn modify(
        &self,
        change: impl FnOnce(&mut Vec<Entry>) + Send + 'static,
    ) -> Result<(), Error> {
        let store = self.clone();
        joined(tokio::task::spawn_blocking(move || store.modify_blocking(change)).await)?
    }

    fn modify_blocking(&self, change: impl FnOnce(&mut Vec<Entry>)) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut document = self.read()?;
        change(&mut document.uploads);
        document.version = VERSION;
        self.write(&document)
    }

    fn read_locked(&self) -> Result<Vec<Entry>, Error> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        Ok(self.read()?.uploads)
    }

    /// An exclusive advisory lock on `<state>.lock`, released when dropped.
    fn lock(&self) -> Result<File, Error> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let path = sibling(&self.path, ".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        file.lock_exclusive().map_err(Error::io(&path))?;
        Ok(file)
    }

    fn read(&self) -> Result<Document, Error> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Document::default());
            }
            Err(err) => return Err(Error::io(&self.path)(err)),
        };
        let mut text = Vec::new();
        file.take(MAX_STATE + 1)
            .read_to_end(&mut text)
            .map_err(Error::io(&self.path))?;
        if text.len() as u64 > MAX_STATE {
            return Err(self.error(format!("over {MAX_STATE} bytes")));
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Document::default());
        }
        let document: Document = serde_json::from_slice(&text).map_err(|err| {
            self.error(format!("not a strongroom state file ({err}); move it away"))
        })?;
        if document.version != VERSION {
            return Err(self.error(format!(
                "format version {} is not {VERSION}",
                document.version
            )));
        }
        Ok(document)
    }

    /// Temp file, fsync, rename, fsync the directory: readers see the old
    /// document or the new one, never a mix, even across a crash.
    fn write(&self, document: &Document) -> Result<(), Error> {
        let temp = sibling(&self.path, ".tmp");
        let bytes = serde_json::to_vec_pretty(document).expect("the state serialises");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&temp)
            .map_err(Error::io(&temp))?;
        file.write_all(&bytes).map_err(Error::io(&temp))?;
        file.sync_all().map_err(Error::io(&temp))?;
        fs::rename(&temp, &self.path).map_err(Error::io(&self.path))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(Error::io(dir))?;
        }
        Ok(())
    }

    fn error(&self, reason: String) -> Error {
        Error::State {
            path: self.path.clone(),
            reason,
        }
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, offset: u64) -> Entry {
        Entry {
            key: Key {
                server: "http://127.0.0.1:8080/".into(),
                path: PathBuf::from(format!("/data/{name}")),
                size: 100,
                mtime_ns: 1,
            },
            created_at: 0,
            plan: Plan::Single {
                part: Part {
                    url: format!("http://127.0.0.1:8080/files/{name}"),
                    start: 0,
                    length: 100,
                    offset,
                },
            },
        }
    }

    #[tokio::test]
    async fn entries_are_replaced_by_key_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("nested/uploads.json"));
        assert!(store.entries().await.unwrap().is_empty());
        store.put(entry("a", 10)).await.unwrap();
        store.put(entry("b", 0)).await.unwrap();
        store.put(entry("a", 50)).await.unwrap();
        let entries = store.entries().await.unwrap();
        assert_eq!(entries.len(), 2);
        let a = store.get(&entry("a", 0).key).await.unwrap().unwrap();
        assert_eq!(a.plan.acknowledged(), 50);
        store.remove(&a.key).await.unwrap();
        assert_eq!(store.entries().await.unwrap(), vec![entry("b", 0)]);
        let left: Vec<_> = fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
    }

    #[tokio::test]
    async fn a_foreign_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads.json");
        fs::write(&path, "{\"something\": \"else\"").unwrap();
        let store = Store::new(path.clone());
        let err = store.put(entry("a", 0)).await.unwrap_err().to_string();
        assert!(err.contains("not a strongroom state file"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"something\": \"else\""
        );
    }

    #[test]
    fn a_changed_file_has_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"one").unwrap();
        let before = Key::of_file("s", &path).unwrap();
        fs::write(&path, b"three").unwrap();
        let after = Key::of_file("s", &path).unwrap();
        assert_ne!(before, after);
        assert!(Key::of_file("s", dir.path()).is_err());
    }
}
